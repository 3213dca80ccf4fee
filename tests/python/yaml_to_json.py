"""Read YAML documents on stdin, print them as one JSON list (for the Rust tests)."""
import json
import sys

import yaml

json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)
