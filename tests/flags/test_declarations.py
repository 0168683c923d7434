"""Declarations in flags/*.yaml and in code, linted with file:line errors like monitors."""

from __future__ import annotations

from pathlib import Path

import pytest

from signalbox.flags.declarations import declare, load_declarations
from signalbox.flags.model import FlagState
from signalbox.scaffold import FLAGS


def test_the_example_init_writes_loads_clean(tmp_path: Path) -> None:
    (tmp_path / "example.yaml").write_text(FLAGS)
    got = load_declarations([tmp_path])
    assert got.ok
    d = got.flags["photo_uploads"]
    assert (d.owner, d.default, d.line) == ("photos", FlagState("on"), 3)
    assert d.where == f"{tmp_path / 'example.yaml'}:3"


def test_defaults_may_be_booleans_on_off_or_a_rollout(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(
        "- {name: a, description: A, default: false}\n"
        "- {name: b, description: B, default: 'on'}\n"
        "- {name: c, description: C, default: '12.5%'}\n"
    )
    got = load_declarations([tmp_path])
    assert got.ok, got.errors
    assert [got.flags[n].default for n in "abc"] == [
        FlagState("off"), FlagState("on"), FlagState("rollout", actors_share=12_500),
    ]  # fmt: skip


def test_every_error_is_reported_at_its_line_and_good_flags_still_load(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(
        "- name: good\n"
        "  description: fine\n"
        "  default: true\n"
        "- name: Bad Name\n"
        "  description: x\n"
        "  default: maybe\n"
        "  ownr: me\n"
        "- name: nodesc\n"
        "  default: 150%\n"
        "- name: good\n"
        "  description: again\n"
        "  default: false\n"
        "- just a string\n"
    )
    got = load_declarations([tmp_path])
    assert list(got.flags) == ["good"]
    lines = [str(e).replace(str(f), "F") for e in got.errors]
    assert lines == [
        "F:4: Bad Name: name: bad name 'Bad Name': expected lowercase letters, digits, '_', '.' "
        "or '-' (up to 100), like photo_uploads",
        "F:6: Bad Name: default: expected true, false, on, off or a percentage like '30%' "
        "(0% to 100%, at most 3 decimals), got 'maybe'",
        "F:7: Bad Name: ownr: unknown key 'ownr' (did you mean 'owner'?): expected one of "
        "name, description, owner, default, values",
        "F:8: nodesc: description: missing 'description': say what turning it off does",
        "F:9: nodesc: default: expected true, false, on, off or a percentage like '30%' "
        "(0% to 100%, at most 3 decimals), got '150%'",
        "F:10: good: name: duplicate flag name 'good': also declared at F:1",
        "F:13: expected a flag (a mapping with name, description, default), got 'just a string'",
    ]


def test_syntax_errors_and_missing_paths_are_named(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("- name: a\n  description: [\n")
    got = load_declarations([tmp_path, tmp_path / "nope"])
    msgs = [str(e) for e in got.errors]
    assert any("broken.yaml:" in m and "YAML syntax error" in m for m in msgs)
    assert f"{tmp_path / 'nope'}: no such file or directory" in msgs


def test_code_declarations_join_and_a_file_wins_on_the_same_name(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text("- {name: a, description: from file, default: true}\n")
    declare("a", default=False, description="from code")
    declare("b", default="5%", description="rollout", owner="web")
    got = load_declarations([tmp_path])
    assert got.flags["a"].description == "from file"
    assert (got.flags["b"].where, got.flags["b"].default.actors_share) == ("code", 5_000)
    with pytest.raises(ValueError, match="default"):
        declare("c", default="sometimes", description="x")
    with pytest.raises(ValueError, match="name"):
        declare("C C", description="x")


def test_values_are_both_strings_or_both_numbers(tmp_path: Path) -> None:
    f = tmp_path / "v.yaml"
    f.write_text(
        "- {name: a, description: A, default: true, values: {on: teal, off: grey}}\n"
        "- {name: b, description: B, default: true, values: {on: 1, off: grey}}\n"
        "- {name: c, description: C, default: true, values: {on: 1}}\n"
        "- {name: d, description: D, default: true, values: {on: [1], off: 2}}\n"
    )
    got = load_declarations([tmp_path])
    assert got.flags["a"].values == ("teal", "grey") and list(got.flags) == ["a"]
    assert [str(e).replace(str(f), "F") for e in got.errors] == [
        "F:2: b: values: on and off must both be strings or both numbers, got 1 and 'grey'",
        "F:3: c: values: missing 'off': give the value when off",
        "F:4: d: values.on: expected a single value, got a list",
    ]
