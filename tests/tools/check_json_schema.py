"""Validate JSON documents against one of airlock's schemas (draft 2020-12).

usage: check_json_schema.py SCHEMA_DIR SCHEMA_FILE DOC...

Every *.schema.json in SCHEMA_DIR is itself checked and registered under its $id, so the
schemas may refer to each other. A document file may carry an insta snapshot header
(`---` … `---`), which is skipped. Prints one line per error and exits 1 when any document
does not validate; exits 2 on a usage or schema error.
"""

import json
import pathlib
import sys

from jsonschema import Draft202012Validator
from referencing import Registry, Resource


def strip_insta_header(text):
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end >= 0:
            return text[end + 5:]
    return text


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    schema_dir = pathlib.Path(argv[0])
    resources = []
    for path in sorted(schema_dir.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry = Registry().with_resources(resources)
    schema = json.loads((schema_dir / argv[1]).read_text())
    validator = Draft202012Validator(
        schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    failed = False
    for name in argv[2:]:
        doc = json.loads(strip_insta_header(pathlib.Path(name).read_text()))
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
            failed = True
            where = "/".join(str(p) for p in error.absolute_path)
            print(f"{name}: /{where}: {error.message}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
