"""Loading with a cache: unchanged files are not parsed again, and nothing else changes."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from signalbox.monitors.definitions.load import LoadCache, load_monitors

A = """\
- name: a_slow
  description: A is slow.
  query: a_latency
  critical: "> 8"
  notify: [ops]
"""
B = """\
- name: b_slow
  description: B is slow.
  query: b_latency
  critical: "> 8"
  depends_on: [a_slow]
"""


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(textwrap.dedent(text))
    return p


def test_an_unchanged_file_is_not_parsed_again(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", A)
    write(tmp_path, "b.yaml", B)
    cache = LoadCache()
    first = load_monitors([tmp_path], cache=cache)
    again = load_monitors([tmp_path], cache=cache)
    assert again == first and first.ok and len(cache) == 2
    assert all(x is y for x, y in zip(again.monitors, first.monitors, strict=True))  # reused


def test_an_edit_is_seen_even_when_size_and_timestamps_stay_the_same(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", A)
    b = write(tmp_path, "b.yaml", B)
    cache = LoadCache()
    first = load_monitors([tmp_path], cache=cache)
    stat = a.stat()
    a.write_text(A.replace('"> 8"', '"> 9"'))  # same length
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = load_monitors([tmp_path], cache=cache)
    assert again == load_monitors([tmp_path])  # what a fresh load says
    assert again.monitors[0] != first.monitors[0] and again.monitors[1] is first.monitors[1]
    assert b.read_text() == textwrap.dedent(B)


def test_errors_across_files_follow_the_current_files_not_the_cached_ones(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", A)
    b = write(tmp_path, "b.yaml", B)
    cache = LoadCache()
    load_monitors([tmp_path], cache=cache)
    b.write_text(B + A)  # a second a_slow: a duplicate name
    dup = load_monitors([tmp_path], cache=cache)
    assert dup == load_monitors([tmp_path])
    assert [e.key for e in dup.errors] == ["name"] and [m.name for m in dup.monitors] == [
        "a_slow",
        "b_slow",
    ]
    b.write_text(B)
    fixed = load_monitors([tmp_path], cache=cache)
    assert fixed.ok and [m.name for m in fixed.monitors] == ["a_slow", "b_slow"]
    (tmp_path / "a.yaml").unlink()  # b now depends on a monitor that is gone
    gone = load_monitors([tmp_path], cache=cache)
    assert gone == load_monitors([tmp_path]) and not gone.monitors
    assert [e.key for e in gone.errors] == ["depends_on"] and len(cache) == 1


def test_a_cached_file_keeps_its_lint_errors_and_notifier_names_are_part_of_the_key(
    tmp_path: Path,
) -> None:
    write(tmp_path, "a.yaml", A + "- name: broken\n  description: no check\n")
    cache = LoadCache()
    loose = load_monitors([tmp_path], cache=cache)
    strict = load_monitors([tmp_path], notifiers={"pager"}, cache=cache)
    assert load_monitors([tmp_path], cache=cache) == loose == load_monitors([tmp_path])
    assert load_monitors([tmp_path], notifiers={"pager"}, cache=cache) == strict
    assert strict == load_monitors([tmp_path], notifiers={"pager"})
    assert [e.key for e in loose.errors] == ["query"]
    assert [e.key for e in strict.errors] == ["notify", "query"]


def test_a_file_that_turns_unreadable_is_reported_not_served_from_the_cache(
    tmp_path: Path,
) -> None:
    a = write(tmp_path, "a.yaml", A)
    cache = LoadCache()
    assert load_monitors([a], cache=cache).ok
    a.write_bytes(b"- name: \xff\n")
    bad = load_monitors([a], cache=cache)
    assert not bad.monitors and "not UTF-8 text" in str(bad.errors[0])
    a.write_text(A.replace("\n", "\r\n"))  # CRLF reads as it does without a cache
    assert load_monitors([a], cache=cache) == load_monitors([a]) and len(cache) == 1
