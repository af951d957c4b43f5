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


def test_every_enum_has_a_member_for_each_value_of_its_proto_enum():
    from sessiond.types import _PROTO

    for enum, (proto, prefix) in _PROTO.items():
        names = {name[len(prefix):].lower() for name in proto.keys() if not name.endswith("_UNSPECIFIED")}
        assert {member.value for member in enum} == names, enum.__name__
