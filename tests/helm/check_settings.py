"""Checks that the chart's `settings` accept exactly sessiond's own variables.

    python tests/helm/check_settings.py SESSIOND_BIN [--write]

The names come from the binary itself: clap prints every flag's
environment variable in `sessiond --help` (`[env: SESSIOND_…]`), and the
help of a renamed flag its former variable (`Formerly --…, SESSIOND_…`,
still accepted), so they cannot drift from src/settings.rs. Those the chart sets itself
(`sessiond.chartOwnedSettings` in templates/_helpers.tpl) must be among
them; every other one must be in values.schema.json's enum of `settings`
names, and nothing else. With --write the enum is rewritten from the binary.
Exits 1 when they differ.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sessiond"
SCHEMA = CHART / "values.schema.json"


def binary_names(binary: str) -> list[str]:
    # An empty environment, so that no value set here reaches the help text.
    help_text = subprocess.run([binary, "--help"], env={}, check=True, capture_output=True, text=True).stdout
    names = re.findall(r"\[env:\s+(SESSIOND_[A-Z0-9_]+)", help_text)
    names += re.findall(r"Formerly\s+--[a-z0-9-]+,\s+(SESSIOND_[A-Z0-9_]+)", help_text)
    names = sorted(set(names))
    if not names:
        raise SystemExit(f"error: `{binary} --help` names no SESSIOND_* variable")
    return names


def chart_owned() -> list[str]:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    match = re.search(r'define "sessiond.chartOwnedSettings".*?\{\{- list (.*?) \| toJson', helpers, re.S)
    if not match:
        raise SystemExit("error: no sessiond.chartOwnedSettings list in _helpers.tpl")
    return re.findall(r'"(SESSIOND_[A-Z0-9_]+)"', match.group(1))


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    names, owned = binary_names(argv[0]), chart_owned()
    settable = [name for name in names if name not in owned]
    schema = json.loads(SCHEMA.read_text())
    property_names = schema["properties"]["settings"]["propertyNames"]
    if "--write" in argv[1:]:
        property_names.clear()
        property_names["enum"] = settable
        SCHEMA.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {len(settable)} settings names into {SCHEMA.relative_to(ROOT)}")

    failed = False
    print(f"  sessiond --help: {len(names)} SESSIOND_* variables; the chart sets {len(owned)} itself")
    unknown_owned = sorted(set(owned) - set(names))
    if unknown_owned:
        failed = True
        print(f"  FAIL  chart-owned names sessiond does not know: {unknown_owned}")
    else:
        print("  ok    every chart-owned name is one of sessiond's")
    enum = property_names.get("enum", [])
    missing, extra = sorted(set(settable) - set(enum)), sorted(set(enum) - set(settable))
    if missing or extra:
        failed = True
        print(f"  FAIL  values.schema.json settings names differ from sessiond's: missing {missing}, "
              f"not sessiond's or set by the chart {extra}; "
              f"regenerate with: python tests/helm/check_settings.py SESSIOND_BIN --write")
    else:
        print(f"  ok    values.schema.json accepts exactly the other {len(settable)} names as settings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
