"""``# stale_after: 25h``: a spool file says how long its values stay fresh.

The directive itself (pure), the spool scan that honours it, the frames fast path that must
not care about it, and the real ``collect --once`` and ``send --stale-after`` commands.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.clock import FrozenClock
from signalbox.metrics.collect import Collector
from signalbox.metrics.parse.keyvalue import keyvalue_shape, parse_keyvalue
from signalbox.metrics.parse.promtext import parse_prometheus
from signalbox.metrics.parse.stale_after import find_stale_after
from signalbox.metrics.samples import Matcher
from signalbox.metrics.spool import scan_spool
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
from tests.cli.helpers import StoreProject, run, store_project
from tests.cli.test_collect_once import setup, spool_of, stored
from tests.stores import pg_schema_url, sqlite_url

__all__ = ["store_project"]

NOW = 1_700_000_000.0
NOW_MS = int(NOW * 1000)
TWO_HOURS = 7200.0


def put(path: Path, text: str, age_s: float = 0.0, now: float = NOW) -> Path:
    path.write_text(text)
    os.utime(path, (now - age_s, now - age_s))
    return path


def scan(spool: Path, stale_after: float = 300.0):  # type: ignore[no-untyped-def]
    return scan_spool(spool, now_ms=NOW_MS, max_file_bytes=1 << 20, stale_after_s=stale_after)


# -- the directive ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("# stale_after: 25h\nbackup_ok=1\n", 90000.0),
        ("#stale_after:1h30m\n", 5400.0),
        ("\ufeff  #  stale_after :\t2d\r\nx=1\r\n", 172800.0),  # BOM, blanks, CRLF
        ("# a comment first\n\n# stale_after: 90s\nx=1\n", 90.0),
        ("# HELP x Backups.\n# TYPE x gauge\n# stale_after: 25h\nx 1\n", 90000.0),
    ],
)
def test_a_header_directive_gives_the_files_limit(text: str, seconds: float) -> None:
    got = find_stale_after(text, "f.metrics")
    assert (got.seconds, got.errors) == (seconds, ())


@pytest.mark.parametrize(
    "text",
    [
        "x=1\n",
        "# stale_after_seconds is a metric below\nbackup_stale_after_seconds=3\n",
        "# HELP stale_after: not a directive\n",
        'x{note="# stale_after: 2h"}=1\n',
        "## stale_after: 2h\n",
    ],
)
def test_other_mentions_of_stale_after_are_not_the_directive(text: str) -> None:
    got = find_stale_after(text, "f.metrics")
    assert (got.seconds, got.errors) == (None, ())


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("# stale_after 25h\nx=1\n", 1, "expected '# stale_after: DURATION'"),
        ("# stale_after: 25 hours\nx=1\n", 1, "bad duration '25 hours'"),
        ("# stale_after:\nx=1\n", 1, "empty duration"),
        ("# stale_after: 0s\nx=1\n", 1, "'0s' must be more than 0s"),
        ("x=1\n\n# stale_after: 25h\n", 3, "must come before the first sample (line 1)"),
        (
            "# stale_after: 25h\n# stale_after: 2h\nx=1\n",
            2,
            "second # stale_after (first on line 1)",
        ),
    ],
)
def test_a_bad_directive_is_reported_on_its_line_and_the_default_applies(
    text: str, line: int, reason: str
) -> None:
    got = find_stale_after(text, "f.metrics")
    assert got.seconds is None
    [err] = got.errors
    assert (err.source, err.line) == ("f.metrics", line)
    assert reason in err.reason and err.reason.endswith("this file uses collect.stale_after")


durations = st.sampled_from(["25h", "2h", "90s", "1d12h", "7d"])
bodies = st.lists(
    st.tuples(st.sampled_from(["jobs_done", "backup_ok", "lag"]), st.integers(0, 9)),
    min_size=1,
    max_size=6,
    unique_by=lambda t: t[0],
)


@given(body=bodies, first=durations, second=durations)
def test_the_directive_is_not_part_of_a_files_shape_or_samples(
    body: list[tuple[str, int]], first: str, second: str
) -> None:
    """The frames fast path caches a file's shape: changing (or adding) the directive must
    neither change the shape nor the samples of either format."""
    kv = "".join(f"{n}={v}\n" for n, v in body)
    prom = "".join(f"{n} {v}\n" for n, v in body)
    a, b = f"# stale_after: {first}\n{kv}", f"# stale_after: {second}\n{kv}"
    assert keyvalue_shape(a) == keyvalue_shape(b) == keyvalue_shape(kv)
    assert parse_keyvalue(a, "a").samples == parse_keyvalue(kv, "kv").samples
    assert parse_keyvalue(a, "a").errors == []
    p = parse_prometheus(f"# stale_after: {first}\n{prom}", "p")
    assert p.samples == parse_prometheus(prom, "q").samples and p.errors == []


fragments = st.sampled_from(
    [
        "# stale_after: 25h",
        "#stale_after:2h",
        "# stale_after",
        "stale_after",
        ":",
        " ",
        "\t",
        "\n",
        "\r\n",
        "x=1",
        "# c",
        "#",
        "0s",
        "25",
        "\ufeff",
        "_seconds",
        "h",
    ]
)


@given(parts=st.lists(fragments, max_size=30))
def test_any_text_gives_a_limit_or_errors_on_real_lines_never_both(parts: list[str]) -> None:
    text = "".join(parts)
    got = find_stale_after(text, "f")
    assert got.seconds is None or (got.seconds > 0 and got.errors == ())
    lines = text.split("\n")
    for err in got.errors:
        assert 1 <= err.line <= len(lines)
        assert "stale_after" in lines[err.line - 1]


# -- the spool scan -------------------------------------------------------------------------


def test_a_two_hour_old_file_with_a_day_long_limit_is_collected_and_one_without_is_not(
    tmp_path: Path,
) -> None:
    put(tmp_path / "daily.metrics", "# stale_after: 25h\nbackup_ok=1\n", TWO_HOURS)
    put(tmp_path / "plain.metrics", "other_ok=1\n", TWO_HOURS)
    put(tmp_path / "daily.prom", "# stale_after: 25h\n# TYPE dump_ok gauge\ndump_ok 1\n", TWO_HOURS)
    r = scan(tmp_path)
    assert {s.name for s in r.samples} == {"backup_ok", "dump_ok"}
    [stale] = r.problems
    assert (stale.file, stale.kind) == ("plain.metrics", "stale")
    assert "collect.stale_after is 300s" in stale.reason
    assert r.stale_after == {"daily.metrics": 90000.0, "daily.prom": 90000.0, "plain.metrics": 300}
    assert r.ages["daily.metrics"] == TWO_HOURS


def test_a_file_past_its_own_limit_is_stale_and_the_message_names_that_limit(
    tmp_path: Path,
) -> None:
    put(tmp_path / "hourly.metrics", "# stale_after: 1h\nx=1\n", TWO_HOURS)
    r = scan(tmp_path)
    assert r.samples == []
    [p] = r.problems
    assert p.kind == "stale" and "its # stale_after is 3600s" in p.reason


def test_a_bad_directive_is_a_bad_line_and_the_file_falls_back_to_the_default(
    tmp_path: Path,
) -> None:
    put(tmp_path / "fresh.metrics", "# stale_after: 25 hours\na=1\nb=2\n")
    put(tmp_path / "old.metrics", "c=3\n# stale_after: 25h\n", TWO_HOURS)  # misplaced
    r = scan(tmp_path)
    assert {s.name: s.value for s in r.samples} == {"a": 1.0, "b": 2.0}  # nothing else lost
    assert [(p.file, p.line, p.kind) for p in r.problems] == [
        ("fresh.metrics", 1, "line"),
        ("old.metrics", 2, "line"),
        ("old.metrics", 0, "stale"),  # the default applies: two hours is too old
    ]
    assert str(r.problems[0]).startswith("fresh.metrics:1: # stale_after: bad duration")
    assert r.bad_lines == {"fresh.metrics": 1, "old.metrics": 1}
    assert r.stale_after == {"fresh.metrics": 300.0, "old.metrics": 300.0}


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.service("postgresql"))]
)
def metric_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLMetricStore]:
    clock = FrozenClock(NOW)
    if request.param == "sqlite":
        s = SQLMetricStore(open_database(sqlite_url(tmp_path)), clock=clock)
        yield s
        s.close()
    else:
        with pg_schema_url() as url:
            s = SQLMetricStore(open_database(url), clock=clock)
            yield s
            s.close()


def test_files_with_the_directive_take_the_frames_path_when_its_value_changes(
    tmp_path: Path, metric_store: SQLMetricStore
) -> None:
    """A clean file's shape is registered on its first pass; later passes send its values
    only, even when the directive's value changes, and store what a full parse would."""
    spool = tmp_path / "spool"
    spool.mkdir()
    clock = metric_store.clock
    assert isinstance(clock, FrozenClock)
    c = Collector(metric_store, spool_dir=spool, host="h", clock=clock)
    put(spool / "daily.metrics", "# stale_after: 25h\nbackup_ok=1\nbackup_bytes=10\n", TWO_HOURS)
    assert c.run_once().problems == []
    for i, limit in enumerate(["2h30m", "25h", "3h"], 1):
        now = NOW + 60 * i
        clock.set(now)
        text = f"# stale_after: {limit}\nbackup_ok=0\nbackup_bytes={10 + i}\n"
        put(spool / "daily.metrics", text, TWO_HOURS, now=now)
        layouts = metric_store.known_layouts((("host", "h"),))
        seen = scan_spool(
            spool,
            now_ms=int(now * 1000),
            max_file_bytes=1 << 20,
            stale_after_s=300,
            layouts=layouts,
        )
        assert len(seen.frames) == 1 and seen.samples == [], limit  # the fast path
        assert c.run_once().problems == []
        got = {n: v for n, _, _, v in metric_store.latest([Matcher("__name__", "=~", "backup_.*")])}
        assert got == {"backup_ok": 0.0, "backup_bytes": 10.0 + i}
        limits = metric_store.latest(
            [Matcher("__name__", "=", "signalbox_spool_file_stale_after_seconds")]
        )
        assert [(lb, v) for _, lb, _, v in limits] == [
            ((("file", "daily.metrics"), ("host", "h")), float(seen.stale_after["daily.metrics"]))
        ]


# -- the commands -----------------------------------------------------------------------------


def test_collect_once_keeps_collecting_a_daily_file_and_drops_an_old_plain_one(
    tmp_path: Path, store_project: StoreProject
) -> None:
    cfg = setup(tmp_path, store_project)
    spool = spool_of(tmp_path)
    now = time.time()
    put(spool / "backup.metrics", "# stale_after: 25h\nbackup_ok=1\n", TWO_HOURS, now)
    put(
        spool / "dump.prom", "# stale_after: 25h\n# TYPE dump_ok gauge\ndump_ok 1\n", TWO_HOURS, now
    )
    put(spool / "plain.metrics", "plain_ok=1\n", TWO_HOURS, now)
    r = run("--config", str(cfg), "collect", "--once", "--json", cwd=tmp_path)
    assert r.returncode == 1, r.stderr  # the stale file is reported (exit 1), as before
    [problem] = json.loads(r.stdout)["problems"]
    assert (problem["file"], problem["kind"]) == ("plain.metrics", "stale")
    host = (("host", "cron1"),)
    assert stored(cfg, "backup_ok|dump_ok|plain_ok") == {
        ("backup_ok", host): 1.0,
        ("dump_ok", host): 1.0,
    }
    ages = stored(cfg, "signalbox_spool_file_(age|stale_after)_seconds")
    for f in ("backup.metrics", "dump.prom", "plain.metrics"):
        age = ages[("signalbox_spool_file_age_seconds", (("file", f), *host))]
        assert TWO_HOURS <= age < TWO_HOURS + 60
    limit = "signalbox_spool_file_stale_after_seconds"
    assert ages[(limit, (("file", "backup.metrics"), *host))] == 90000.0
    assert ages[(limit, (("file", "plain.metrics"), *host))] == 300.0


@pytest.mark.peer("promtool")
def test_a_prom_file_with_the_directive_is_still_valid_for_promtool(tmp_path: Path) -> None:
    text = "# stale_after: 25h\n# HELP dump_ok Whether the dump worked.\n# TYPE dump_ok gauge\ndump_ok 1\n"
    r = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_send_stale_after_writes_the_directive_and_collect_honours_it(
    tmp_path: Path, store_project: StoreProject
) -> None:
    cfg = setup(tmp_path, store_project)
    spool = spool_of(tmp_path)
    r = run(
        "--config",
        str(cfg),
        "send",
        "--file",
        "backup",
        "--stale-after",
        "25h",
        "backup_ok=1",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    path = spool / "backup.metrics"
    assert path.read_text() == "# stale_after: 25h\nbackup_ok=1.0\n"
    r = run("--config", str(cfg), "send", "--file", "backup", "backup_bytes=7", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert path.read_text() == "# stale_after: 25h\nbackup_ok=1.0\nbackup_bytes=7.0\n"  # kept
    old = time.time() - TWO_HOURS
    os.utime(path, (old, old))
    r = run("--config", str(cfg), "collect", "--once", "--json", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["problems"] == [], r.stdout + r.stderr
    host = (("host", "cron1"),)
    assert stored(cfg, "backup_.*") == {("backup_ok", host): 1.0, ("backup_bytes", host): 7.0}


def test_send_with_a_new_stale_after_replaces_the_old_and_a_bad_one_writes_nothing(
    tmp_path: Path,
) -> None:
    spool = tmp_path / ".signalbox" / "spool"
    assert run("send", "--stale-after", "25h", "a=1", cwd=tmp_path).returncode == 0
    r = run("send", "--stale-after", "2h", "b=2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (spool / "send.metrics").read_text() == "# stale_after: 2h\na=1.0\nb=2.0\n"
    for bad in ("0s", "two days", ""):
        r = run("send", "--stale-after", bad, "c=3", cwd=tmp_path)
        assert r.returncode == 2, (bad, r.stderr)
        assert f"--stale-after {bad!r}" in r.stderr
    assert (spool / "send.metrics").read_text() == "# stale_after: 2h\na=1.0\nb=2.0\n"


def test_send_says_which_lines_of_the_old_file_it_could_not_carry_over(tmp_path: Path) -> None:
    spool = tmp_path / ".signalbox" / "spool"
    spool.mkdir(parents=True)
    (spool / "send.metrics").write_text("# stale_after: soon\nkept=1\nnot a metric\n")
    r = run("send", "new=2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (spool / "send.metrics").read_text() == "kept=1.0\nnew=2.0\n"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith(f"{spool / 'send.metrics'}:1: not carried over: # stale_after: bad")
    assert lines[1].startswith(f"{spool / 'send.metrics'}:3: not carried over: expected NAME=VALUE")
