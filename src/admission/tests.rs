use regex::Regex;
use serde_json::Value;

use super::*;
use crate::cluster::{LiveImage, LiveSet, LiveState, Missing};
use crate::model::Reference;

fn d(s: &str) -> Digest {
    Digest::of(s.as_bytes())
}

fn live_set() -> LiveSet {
    let img = |src: &str, state| {
        let source: Reference = src.parse().unwrap();
        LiveImage {
            repository: format!("live/{}", source.path),
            tag: source.tag.clone().unwrap(),
            source,
            state,
        }
    };
    LiveSet {
        host: "acr.example.io".into(),
        prefix: "live".into(),
        images: vec![
            img("busybox:1.33.0", LiveState::Live(d("a"))),
            img("busybox:1.36.1", LiveState::Live(d("b"))),
            img(
                "ghcr.io/fluxcd/kustomize-controller:v0.6.3",
                LiveState::Live(d("c")),
            ),
            img(
                "weaveworks/kured:1.6.1",
                LiveState::Missing(Missing::Blocked {
                    findings: vec![],
                    other_policy: false,
                }),
            ),
        ],
    }
}

fn rules() -> Rules {
    Rules::new(&live_set(), &["kube-system".to_string()])
}

#[test]
fn the_pattern_admits_exactly_live_references_pinned_by_digest() {
    let r = rules();
    let re = Regex::new(&r.image_regex()).unwrap();
    let (a, b, c) = (d("a"), d("b"), d("c"));
    let blocked = d("kured");
    for ok in [
        format!("acr.example.io/live/library/busybox@{a}"),
        format!("acr.example.io/live/library/busybox@{b}"),
        format!("acr.example.io/live/library/busybox:1.36.1@{b}"),
        format!("acr.example.io/live/library/busybox:anything_else-1.0@{a}"),
        format!("acr.example.io/live/fluxcd/kustomize-controller:v0.6.3@{c}"),
    ] {
        assert!(re.is_match(&ok), "admits {ok}");
    }
    for denied in [
        "busybox:1.33.0".to_string(),
        format!("docker.io/library/busybox@{a}"),
        "acr.example.io/live/library/busybox:1.36.1".to_string(),
        format!("acr.example.io/live/library/busybox@{c}"), // another repository's digest
        format!("acr.example.io/live/weaveworks/kured@{blocked}"),
        format!("acr.example.io/quarantine/library/busybox@{a}"),
        format!("acr.example.io.evil.example/live/library/busybox@{a}"),
        format!("acr.example.io:443/live/library/busybox@{a}"),
        format!("acrXexample.io/live/library/busybox@{a}"),
        format!("evil.example/acr.example.io/live/library/busybox@{a}"),
        format!("acr.example.io/live/library/busybox/../busybox@{a}"),
        format!("acr.example.io/live/../live/library/busybox@{a}"),
        format!("acr.example.io/live/library/busybox@{a}x"),
        format!("acr.example.io/live/library/busybox@{a}\n"),
        format!("xacr.example.io/live/library/busybox@{a}"),
        format!("acr.example.io/live/library/busybox:-x@{a}"),
        format!("acr.example.io/live/library/busybox:@{a}"),
        format!("acr.example.io/live/library/busybox@{a}@{a}"),
        format!("ACR.example.io/live/library/busybox@{a}"),
    ] {
        assert!(!re.is_match(&denied), "denies {denied:?}");
    }
}

#[test]
fn nothing_live_admits_nothing() {
    let r = Rules::new(
        &LiveSet {
            host: "h.io".into(),
            prefix: "live".into(),
            images: vec![],
        },
        &[],
    );
    let re = Regex::new(&r.image_regex()).unwrap();
    for s in ["", "h.io/live/x@sha256:00", "a"] {
        assert!(!re.is_match(s), "{s:?}");
    }
}

#[test]
fn vap_fails_closed_and_denies() {
    let (p, b) = vap::objects(&rules());
    assert_eq!(p["spec"]["failurePolicy"], "Fail");
    assert_eq!(b["spec"]["validationActions"], serde_json::json!(["Deny"]));
    assert_eq!(b["spec"]["policyName"], p["metadata"]["name"]);
    let rr = &p["spec"]["matchConstraints"]["resourceRules"][0];
    assert_eq!(rr["operations"], serde_json::json!(["CREATE", "UPDATE"]));
    assert_eq!(
        p["spec"]["matchConstraints"]["namespaceSelector"]["matchExpressions"][0]["values"],
        serde_json::json!(["kube-system"])
    );
    // No namespace list: no selector at all (NotIn with no values is invalid).
    let open = Rules {
        exempt_namespaces: vec![],
        ..rules()
    };
    assert!(
        vap::objects(&open).0["spec"]["matchConstraints"]
            .get("namespaceSelector")
            .is_none()
    );
}

#[test]
fn every_format_is_deterministic_and_carries_the_same_pattern() {
    let r = rules();
    let re = r.image_regex();
    for f in [
        Format::Vap,
        Format::Gatekeeper,
        Format::Kyverno,
        Format::AzurePolicy,
    ] {
        let a = render(&r, f);
        assert_eq!(a, render(&rules(), f), "{f:?}");
        // The pattern appears as a JSON/YAML/CEL string literal.
        let quoted = serde_json::to_string(&re).unwrap();
        assert!(
            a.contains(&quoted[1..quoted.len() - 1]),
            "{f:?} carries the pattern:\n{a}"
        );
    }
    let az: Value = serde_json::from_str(&render(&r, Format::AzurePolicy)).unwrap();
    assert_eq!(az["allowedContainerImagesRegex"]["value"], re);
    assert_eq!(az["effect"]["value"], "Deny");
    assert_eq!(
        az["excludedNamespaces"]["value"],
        serde_json::json!(["kube-system"])
    );
}

#[test]
fn cel_strings_escape_backslashes_and_quotes() {
    assert_eq!(cel_string(r#"a\.b"c"#), r#""a\\.b\"c""#);
}

#[test]
fn exempt_namespaces_come_from_the_configuration() {
    let base = r#"
[registries.acr]
endpoint = "https://acr.example.io"
[quarantine]
registry = "acr"
[live]
registry = "acr"
"#;
    let parse = |extra: &str| crate::config::fixture::parse(&format!("{base}{extra}"));
    assert_eq!(
        parse("").unwrap().admission.exempt_namespaces,
        ["kube-system"]
    );
    assert_eq!(
        parse(
            "[admission]\nexempt_namespaces = [\"monitoring\", \"kube-system\", \"monitoring\"]\n"
        )
        .unwrap()
        .admission
        .exempt_namespaces,
        ["kube-system", "monitoring"]
    );
    assert!(
        parse("[admission]\nexempt_namespaces = []\n")
            .unwrap()
            .admission
            .exempt_namespaces
            .is_empty()
    );
    let e = parse("[admission]\nexempt_namespaces = [\"Kube_System\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not a valid namespace name") && e.contains(":9:"),
        "{e}"
    );
    let e = parse("[admission]\nexempt = []\n").unwrap_err().to_string();
    assert!(e.contains("unknown field"), "{e}");
}

/// The kyverno policy parsed back from its YAML (serde_yaml is not a dependency: the YAML
/// writer's output is checked through the JSON value it was made from, and the comment text).
fn kyverno_rules(r: &Rules) -> Vec<Value> {
    kyverno::object(r)["spec"]["rules"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn kyverno_checks_promotion_record_attestations_only_with_a_public_key() {
    let plain = rules();
    assert_eq!(kyverno_rules(&plain).len(), 1);
    let text = kyverno::render(&plain);
    assert!(
        text.contains("# Attestations are NOT checked: no [signing] public_key"),
        "{text}"
    );
    assert!(!text.contains("verifyImages:"), "{text}");

    let key = crate::signing::Signer::for_tests(3).verifier();
    let signing = crate::signing::Signing {
        public_key: Some(std::sync::Arc::new(key.clone())),
        ..Default::default()
    };
    let pem = rules().with_signing(&signing);
    let all = kyverno_rules(&pem);
    assert_eq!(all.len(), 2, "the digest check stays first");
    assert_eq!(all[0], kyverno_rules(&plain)[0]);
    let v = &all[1]["verifyImages"][0];
    assert_eq!(
        v["imageReferences"],
        serde_json::json!(["acr.example.io/live/*"])
    );
    assert_eq!(v["type"], "Cosign");
    assert_eq!(v["cosignOCI11"], true);
    assert_eq!(v["required"], true);
    assert_eq!(v["verifyDigest"], true);
    let att = &v["attestations"][0];
    assert_eq!(att["type"], crate::records::PROMOTION_PREDICATE);
    let keys = &att["attestors"][0]["entries"][0]["keys"];
    assert_eq!(keys["publicKeys"], key.to_pem());
    assert!(keys.get("kms").is_none());
    assert_eq!(keys["rekor"]["ignoreTlog"], true);
    assert_eq!(all[1]["exclude"], all[0]["exclude"], "same exemptions");
    let text = kyverno::render(&pem);
    assert!(text.contains("signed by [signing] public_key"), "{text}");
    assert!(text.contains("-----BEGIN PUBLIC KEY-----"), "{text}");

    let signing = crate::signing::Signing {
        public_key_kms: Some(
            crate::signing::KmsKey::parse(
                "azurekms://kv1.vault.azure.net/airlock",
                "vault.azure.net",
            )
            .unwrap(),
        ),
        // Read from Key Vault already: the reference is what Kyverno gets.
        public_key: Some(std::sync::Arc::new(key)),
        ..Default::default()
    };
    let kms = rules().with_signing(&signing);
    let keys = &kyverno_rules(&kms)[1]["verifyImages"][0]["attestations"][0]["attestors"][0]["entries"]
        [0]["keys"];
    assert_eq!(keys["kms"], "azurekms://kv1.vault.azure.net/airlock");
    assert!(keys.get("publicKeys").is_none());
    assert!(
        kyverno::render(&kms).contains("the Key Vault key azurekms://kv1.vault.azure.net/airlock")
    );
}
