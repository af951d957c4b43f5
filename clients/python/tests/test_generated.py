"""src/sessiond/v1 is what generate.py makes from proto/ now: never edited by hand."""

from __future__ import annotations

import filecmp
import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def test_the_checked_in_stubs_are_generated_from_the_current_proto(tmp_path):
    spec = importlib.util.spec_from_file_location("generate", HERE / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.generate(tmp_path)
    stale = [name for name in generate.GENERATED
             if not filecmp.cmp(tmp_path / name, HERE / "src" / name, shallow=False)]
    assert stale == [], f"stale generated stubs {stale}: run `python clients/python/generate.py`"
