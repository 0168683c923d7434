"""The spool dir is written by other programs: every refusal is reported, good lines count."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalbox.metrics.spool import scan_spool

NOW_MS = 1_700_000_000_000


def scan(
    spool: Path, *, max_bytes: int = 1 << 20, stale_after: float = 1e12, now_ms: int | None = None
):  # type: ignore[no-untyped-def]
    return scan_spool(
        spool, now_ms=now_ms or NOW_MS, max_file_bytes=max_bytes, stale_after_s=stale_after
    )


def fresh(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    os.utime(path, (NOW_MS / 1000, NOW_MS / 1000))
    return path


def values(result) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {s.name: s.value for s in result.samples}


def test_seed_example_is_collected(tmp_path: Path) -> None:
    fresh(tmp_path / "photos.metrics", "image_processed=30\nimage_processing_time=5\n")
    r = scan(tmp_path)
    assert values(r) == {"image_processed": 30.0, "image_processing_time": 5.0}
    assert r.problems == [] and r.files_read == 1


def test_bad_line_is_reported_with_file_and_line_and_good_lines_still_count(tmp_path: Path) -> None:
    fresh(tmp_path / "a.metrics", "ok_one=1\nthis is not a metric\nok_two=2")  # no trailing newline
    r = scan(tmp_path)
    assert values(r) == {"ok_one": 1.0, "ok_two": 2.0}
    [p] = r.problems
    assert (p.file, p.line, p.kind) == ("a.metrics", 2, "line")
    assert "NAME=VALUE" in p.reason
    assert r.bad_lines == {"a.metrics": 1}


def test_in_progress_files_are_skipped_and_other_names_reported_as_ignored(tmp_path: Path) -> None:
    fresh(tmp_path / ".writing.metrics", "a=1\n")
    fresh(tmp_path / "b.metrics.tmp", "b=1\n")
    fresh(tmp_path / "notes.txt", "c=1\n")
    (tmp_path / "subdir").mkdir()
    r = scan(tmp_path)
    assert r.samples == []
    assert [(p.file, p.kind) for p in r.problems] == [("notes.txt", "ignored")]


def test_prom_files_are_read_with_types(tmp_path: Path) -> None:
    fresh(
        tmp_path / "x.prom",
        '# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total{q="a"} 3\n',
    )
    r = scan(tmp_path)
    assert [(s.name, s.labels, s.value) for s in r.samples] == [("jobs_total", (("q", "a"),), 3.0)]
    assert any(m.name == "jobs_total" and m.type == "counter" for m in r.metas)


def test_prom_timestamps_within_policy_are_kept_and_others_refused_per_line(tmp_path: Path) -> None:
    recent, old, future = NOW_MS - 60_000, NOW_MS - 2 * 3600_000, NOW_MS + 3600_000
    fresh(tmp_path / "t.prom", f"a {1} {recent}\nb 2 {old}\nc 3 {future}\nd 4\n")
    r = scan(tmp_path)
    assert {s.name: s.timestamp_ms for s in r.samples} == {"a": recent, "d": None}
    reasons = " ".join(p.reason for p in r.problems)
    assert "b" in reasons and "c" in reasons and "1h old" in reasons


def test_symlink_out_of_the_spool_is_refused_but_inside_is_followed(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    secret = tmp_path / "secret.metrics"
    secret.write_text("secret=1\n")
    os.symlink(secret, spool / "evil.metrics")
    fresh(spool / "real.data", "inside=2\n")
    os.symlink(spool / "real.data", spool / "link.metrics")
    r = scan(spool)
    assert values(r) == {"inside": 2.0}
    evil = [p for p in r.problems if p.file == "evil.metrics"]
    assert evil and evil[0].kind == "refused" and "leads out of the spool" in evil[0].reason


def test_dangling_symlink_and_fifo_are_refused_without_hanging(tmp_path: Path) -> None:
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling.metrics")
    os.mkfifo(tmp_path / "pipe.metrics")
    fresh(tmp_path / "good.metrics", "g=1\n")
    done = threading.Event()
    result = []

    def run() -> None:
        result.append(scan(tmp_path))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(5), "scanning a FIFO must not block"
    r = result[0]
    assert values(r) == {"g": 1.0}
    kinds = {p.file: (p.kind, p.reason) for p in r.problems}
    assert (
        kinds["pipe.metrics"][0] == "refused" and "not a regular file" in kinds["pipe.metrics"][1]
    )
    assert kinds["dangling.metrics"][0] == "refused"


def test_directory_named_like_a_metrics_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.metrics").mkdir()
    r = scan(tmp_path)
    assert [(p.file, p.kind) for p in r.problems] == [("dir.metrics", "refused")]


def test_oversized_file_is_refused_with_the_limit_named(tmp_path: Path) -> None:
    fresh(tmp_path / "big.metrics", "a=1\n" * 1000)
    fresh(tmp_path / "small.metrics", "b=1\n")
    r = scan(tmp_path, max_bytes=100)
    assert values(r) == {"b": 1.0}
    [p] = r.problems
    assert (
        p.file == "big.metrics"
        and "100-byte limit" in p.reason
        and "collect.max_file_bytes" in p.reason
    )


def test_binary_garbage_is_refused(tmp_path: Path) -> None:
    fresh(tmp_path / "core.metrics", b"\x7fELF\x00\x01\x02garbage")
    r = scan(tmp_path)
    assert r.samples == []
    assert r.problems[0].kind == "refused" and "binary" in r.problems[0].reason


def test_invalid_utf8_makes_only_that_line_bad(tmp_path: Path) -> None:
    fresh(tmp_path / "u.metrics", b"good=1\nbad\xff\xfe=2\nalso_good=3\n")
    r = scan(tmp_path)
    assert values(r) == {"good": 1.0, "also_good": 3.0}
    assert [p.line for p in r.problems] == [2]


def test_stale_file_is_reported_not_collected_and_its_age_stays_visible(tmp_path: Path) -> None:
    p = fresh(tmp_path / "old.metrics", "a=1\n")
    os.utime(p, (NOW_MS / 1000 - 3600, NOW_MS / 1000 - 3600))
    r = scan(tmp_path, stale_after=300)
    assert r.samples == []
    assert r.problems[0].kind == "stale" and "3600s" in r.problems[0].reason
    assert r.ages["old.metrics"] == 3600


def test_same_series_in_two_files_is_reported_naming_both(tmp_path: Path) -> None:
    fresh(tmp_path / "a.metrics", 'x{k="1"}=1\n')
    fresh(tmp_path / "b.metrics", 'x{k="1"}=2\ny=3\n')
    r = scan(tmp_path)
    assert values(r) == {"x": 1.0, "y": 3.0}
    [p] = r.problems
    assert (
        p.file == "b.metrics"
        and p.kind == "duplicate"
        and "a.metrics" in p.reason
        and 'x{k="1"}' in p.reason
    )


def test_missing_spool_dir_is_not_an_error(tmp_path: Path) -> None:
    r = scan(tmp_path / "nope")
    assert r.samples == [] and r.problems == []


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    files=st.dictionaries(
        st.from_regex(r"[a-z]{1,8}\.(metrics|prom|tmp|txt)", fullmatch=True),
        st.binary(max_size=300),
        max_size=6,
    )
)
def test_fuzzed_spool_dirs_never_crash_and_every_file_is_accounted_for(
    tmp_path_factory, files: dict[str, bytes]
) -> None:  # type: ignore[no-untyped-def]
    spool = tmp_path_factory.mktemp("fuzz")
    for name, data in files.items():
        fresh(spool / name, data)
    r = scan(spool)
    relevant = {n for n in files if n.endswith((".metrics", ".prom"))}
    mentioned = {p.file for p in r.problems} | {n for n in relevant if n in r.ages}
    assert relevant <= mentioned
    assert r.files_read <= len(relevant)
