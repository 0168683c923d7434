"""The window a ``*.prom`` sample's own timestamp must fall in (at most 1 hour old, at most
5 minutes ahead), checked column-wise by the spool scanner: its edges, the order of the
problems, and the samples kept around them."""

from __future__ import annotations

import os
from pathlib import Path

from signalbox.metrics.spool import MAX_FUTURE_MS, MAX_PAST_MS, scan_spool

NOW_MS = 1_700_000_000_000


def test_the_window_is_inclusive_and_each_sample_outside_is_one_problem_in_line_order(
    tmp_path: Path,
) -> None:
    stamps = {
        "a": NOW_MS - MAX_PAST_MS,  # the oldest kept
        "b": NOW_MS - MAX_PAST_MS - 1,
        "c": NOW_MS + MAX_FUTURE_MS,  # the newest kept
        "d": NOW_MS + MAX_FUTURE_MS + 1,
        "e": 0,
    }
    text = "".join(f'{n}{{k="{n}"}} 1 {ts}\n' for n, ts in stamps.items()) + "f 2\n"
    path = tmp_path / "t.prom"
    path.write_text(text)
    os.utime(path, (NOW_MS / 1000, NOW_MS / 1000))
    r = scan_spool(
        tmp_path, now_ms=NOW_MS, max_file_bytes=1 << 20, stale_after_s=60, layouts=frozenset()
    )
    assert [(s.name, s.timestamp_ms) for s in r.samples] == [
        ("a", stamps["a"]),
        ("c", stamps["c"]),
        ("f", None),
    ]
    assert [str(p) for p in r.problems] == [
        f't.prom: timestamp {stamps[n]} of {n}{{k="{n}"}} is more than 1h old or 5m ahead; '
        "sample not stored"
        for n in "bde"
    ]
    assert r.bad_lines == {"t.prom": 3}
    assert r.new_layouts == [] and r.frames == []  # stamped: no shape, parsed every pass


def test_a_file_without_stamps_keeps_every_sample(tmp_path: Path) -> None:
    path = tmp_path / "t.prom"
    path.write_text("".join(f"m{i} {i}\n" for i in range(100)))
    os.utime(path, (NOW_MS / 1000, NOW_MS / 1000))
    r = scan_spool(tmp_path, now_ms=NOW_MS, max_file_bytes=1 << 20, stale_after_s=60)
    assert [s.value for s in r.samples] == [float(i) for i in range(100)]
    assert r.problems == []
