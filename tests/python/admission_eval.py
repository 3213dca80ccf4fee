"""Evaluate airlock's admission policies with real third-party evaluators.

Usage: admission_eval.py DIR
DIR holds vap.yaml, gatekeeper.yaml, kyverno.yaml, azure-policy.json (airlock's outputs),
cases.json ([{"name", "namespace", "pod", "oldPod" (UPDATE; absent on CREATE)}]) and kyverno-schema.json (the ClusterPolicy CRD
schema). Prints {"<format>": {"<case>": {"allowed": bool, "message": str}}} as JSON.
Schema and lint problems are fatal (exit 1, on stderr).

- vap: kubernetes-validate (strict, Kubernetes 1.30 schemas); CEL with cel-python.
- gatekeeper: the template's Rego with regopy (rego-cpp); match.excludedNamespaces.
- kyverno: jsonschema against the CRD schema with unknown fields forbidden; the same CEL.
- azure-policy: google-re2, searched unanchored like Gatekeeper's re_match, on every image
  (the built-in has no notion of an image the pod already had).
Namespace selection (selector, excludedNamespaces) is read from each policy as written.
"""
import json
import sys
from pathlib import Path

import celpy
import jsonschema
import kubernetes_validate
import re2
import yaml
from regopy import Interpreter
from yamllint import linter
from yamllint.config import YamlLintConfig

LINT = YamlLintConfig(
    "extends: default\nrules:\n  line-length: disable\n  document-start: disable\n"
    "  indentation: {spaces: consistent, indent-sequences: whatever}\n"
)


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def load_yaml(path):
    text = path.read_text()
    problems = [p for p in linter.run(text, LINT) if p.level == "error"]
    if problems:
        fail(f"{path.name}: yamllint: " + "; ".join(f"{p.line}:{p.column} {p.message}" for p in problems))
    return [d for d in yaml.safe_load_all(text) if d is not None]


def images_of(pod):
    spec = pod["spec"]
    return [c["image"] for k in ("containers", "initContainers", "ephemeralContainers") for c in spec.get(k, [])]


def cel_eval(env, expr, activation):
    return env.program(env.compile(expr)).evaluate(activation)


def cel_check(variables, validations, pod, old):
    """Evaluate VAP-style variables then validations; (allowed, message)."""
    env = celpy.Environment()
    objects = {"object": celpy.json_to_cel(pod), "oldObject": celpy.json_to_cel(old)}
    values = {}
    for v in variables:
        act = {**objects, "variables": celpy.celtypes.MapType(values)}
        values[celpy.celtypes.StringType(v["name"])] = cel_eval(env, v["expression"], act)
    act = {**objects, "variables": celpy.celtypes.MapType(values)}
    for v in validations:
        ok = cel_eval(env, v["expression"], act)
        if not isinstance(ok, celpy.celtypes.BoolType):
            fail(f"CEL expression did not give a bool: {ok!r}")
        if not ok:
            msg = cel_eval(env, v["messageExpression"], act) if "messageExpression" in v else v.get("message", "")
            return False, str(msg)
    return True, ""


def selector_exempts(selector, ns):
    for e in (selector or {}).get("matchExpressions", []):
        if e["key"] != "kubernetes.io/metadata.name" or e["operator"] != "NotIn":
            fail(f"unexpected namespace selector {e}")
        if ns in e["values"]:
            return True
    return False


def strict(schema):
    """CRD schemas allow unknown fields (pruned by the API server); a generated policy must not rely on that."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    return schema


def vap(d, cases):
    docs = load_yaml(d / "vap.yaml")
    kinds = [x["kind"] for x in docs]
    if kinds != ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]:
        fail(f"vap kinds {kinds}")
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, "1.30.0", strict=True)
        except jsonschema.ValidationError as e:
            fail(f"vap schema ({doc['kind']}): {e.message} at {list(e.absolute_path)}")
    spec = docs[0]["spec"]
    out = {}
    for c in cases:
        if selector_exempts(spec["matchConstraints"].get("namespaceSelector"), c["namespace"]):
            out[c["name"]] = {"allowed": True, "message": "exempt"}
            continue
        ok, msg = cel_check(spec.get("variables", []), spec["validations"], c["pod"], c.get("oldPod"))
        out[c["name"]] = {"allowed": ok, "message": msg}
    return out


def gatekeeper(d, cases):
    docs = load_yaml(d / "gatekeeper.yaml")
    template, constraint = docs
    if template["kind"] != "ConstraintTemplate" or constraint["kind"] != template["spec"]["crd"]["spec"]["names"]["kind"]:
        fail("gatekeeper kinds")
    rego = template["spec"]["targets"][0]["rego"]
    package = rego.split("\n", 1)[0].split()[1]
    excluded = constraint["spec"]["match"].get("excludedNamespaces", [])
    out = {}
    for c in cases:
        if c["namespace"] in excluded:
            out[c["name"]] = {"allowed": True, "message": "exempt"}
            continue
        interp = Interpreter()
        interp.add_module("template.rego", rego)
        # set_input_term with JSON: regopy's set_input mangles backslashes in strings.
        interp.set_input_term(json.dumps({
            "review": {
                "object": c["pod"],
                "oldObject": c.get("oldPod"),
                "operation": "UPDATE" if c.get("oldPod") else "CREATE",
                "namespace": c["namespace"],
                "kind": {"kind": "Pod"},
            },
            "parameters": constraint["spec"]["parameters"],
        }))
        output = interp.query(f"x := data.{package}.violation")
        if not output.ok():
            fail(f"rego error: {output}")
        result = json.loads(str(output))
        violations = result["bindings"]["x"]
        out[c["name"]] = {
            "allowed": not violations,
            "message": "; ".join(sorted(v["msg"] for v in violations)),
        }
    return out


def kyverno(d, cases):
    docs = load_yaml(d / "kyverno.yaml")
    if len(docs) != 1:
        fail("kyverno: one ClusterPolicy")
    policy = docs[0]
    schema = strict(json.loads((d / "kyverno-schema.json").read_text())["schema"])
    try:
        jsonschema.validate(policy, schema)
    except jsonschema.ValidationError as e:
        fail(f"kyverno schema: {e.message} at {list(e.absolute_path)}")
    rule = policy["spec"]["rules"][0]
    if rule["validate"].get("failureAction") != "Enforce":
        fail("kyverno: not enforced")
    excluded = [ns for a in rule.get("exclude", {}).get("any", []) for ns in a["resources"].get("namespaces", [])]
    cel = rule["validate"]["cel"]
    out = {}
    for c in cases:
        if c["namespace"] in excluded:
            out[c["name"]] = {"allowed": True, "message": "exempt"}
            continue
        ok, msg = cel_check(cel.get("variables", []), cel["expressions"], c["pod"], c.get("oldPod"))
        out[c["name"]] = {"allowed": ok, "message": msg}
    return out


def azure(d, cases):
    params = json.loads((d / "azure-policy.json").read_text())
    if sorted(params) != ["allowedContainerImagesRegex", "effect", "excludedNamespaces"]:
        fail(f"azure parameters {sorted(params)}")
    if params["effect"]["value"] not in ("Deny", "deny"):
        fail("azure: effect is not Deny")
    regex = re2.compile(params["allowedContainerImagesRegex"]["value"])
    excluded = params["excludedNamespaces"]["value"]
    out = {}
    for c in cases:
        if c["namespace"] in excluded:
            out[c["name"]] = {"allowed": True, "message": "exempt"}
            continue
        bad = [i for i in images_of(c["pod"]) if regex.search(i) is None]
        out[c["name"]] = {"allowed": not bad, "message": ", ".join(bad)}
    return out


def main():
    d = Path(sys.argv[1])
    cases = json.loads((d / "cases.json").read_text())
    result = {
        "vap": vap(d, cases),
        "gatekeeper": gatekeeper(d, cases),
        "kyverno": kyverno(d, cases),
        "azure-policy": azure(d, cases),
    }
    json.dump(result, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
