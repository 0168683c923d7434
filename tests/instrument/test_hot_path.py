"""The per-request shortcuts agree with the plain code they replace.

The combined format writes a request's notes in one pass (converted and escaped together),
the JSON format through the notes dict; request ids come from a pool read 64 at a time; a
buffered flush counts its requests in one update of the metrics; the escaping checks use
character sets instead of regex searches. Each must give what the plain way gives.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.instrument.test_accesslog import HOSTILE, hostile_text

from signalbox.instrument.accesslog import (
    _QUERY_UNSAFE,
    _QUOTED_UNSAFE,
    _TARGET_UNSAFE,
    _query_safe,
    _quoted_safe,
    _target_safe,
    combined_with_pairs,
    parse_line,
)
from signalbox.instrument.context import REQUEST_ID, new_id
from signalbox.instrument.core import Instrument
from signalbox.instrument.metrics import RequestMetrics
from signalbox.metrics.client import Client

note_values = st.one_of(
    hostile_text,
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(hostile_text, max_size=3),
    st.dictionaries(hostile_text, st.integers(), max_size=2),
    st.text(min_size=30, max_size=60),  # longer than max_note_chars: cut
)
note_names = st.one_of(
    st.sampled_from(
        ["user_id", "api_key", "token", "flags", "trace_id", "ts", "route", "a-b", "a_b", "1x"]
    ),
    st.text(min_size=1, max_size=6),
)


def _core(tmp: Path, fmt: str) -> Instrument:
    return Instrument(
        access_log=tmp / f"{fmt}.log",
        format=fmt,
        host="web1",
        secret_notes=("api_key", "token"),
        secret=b"k",
        metrics=False,
        request_id_header="X-Request-ID",
        trust_request_id=True,
        max_note_chars=24,
        buffer_lines=1,
        flush_interval=1.0,
    )


def _fields(source: Any) -> tuple[str, str, str, str, str, str, str, str]:
    return ("GET", "/p", "q=1", "HTTP/1.1", "10.0.0.1", "", "ua", "/p")


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(note_names, note_values, max_size=6),
    st.one_of(st.none(), st.just("00-" + "a" * 32 + "-" + "b" * 16 + "-01")),
)
def test_the_combined_one_pass_notes_read_back_as_the_json_notes(
    tmp_path_factory: Any, notes: dict[str, Any], traceparent: str | None
) -> None:
    """Renamed keys (two notes meeting under one name), secret notes, cut values, every
    value type, hostile text, user_id as the %u field or empty, the caller's trace id."""
    tmp = tmp_path_factory.mktemp("h")
    records = []
    for fmt in ("combined", "json"):
        core = _core(tmp, fmt)
        for _ in range(2):  # the second time, pairs written before come from the cache
            ctx = core.begin("rid-1", traceparent)
            ctx.notes.update(notes)
            core.finish(ctx, 1.7e9, 0.0012, 200, 5, _fields, None)
        core.close()
        first, again = (tmp / f"{fmt}.log").read_text(encoding="utf-8").splitlines()
        assert again == first
        records.append(parse_line(first))
    combined, json_ = records
    assert dict(combined.notes) == dict(json_.notes)
    assert combined.request_id == json_.request_id == "rid-1"
    assert (combined.status, combined.duration_us, combined.route) == (200, 1200, "/p")


def test_the_escape_checks_flag_exactly_what_the_regexes_escape() -> None:
    chars = [
        *map(chr, range(0x3000)),
        *map(chr, range(0xD7F0, 0xE010)),
        "\ufeff",
        "\ufffe",
        "\U0010ffff",
        *HOSTILE,
    ]
    for c in chars:
        assert _quoted_safe(c) == (_QUOTED_UNSAFE.search(c) is None), repr(c)
        assert _target_safe(c) == (_TARGET_UNSAFE.search(c) is None), repr(c)
        assert _query_safe(c) == (_QUERY_UNSAFE.search(c) is None), repr(c)


def test_fresh_request_ids_are_random_hex_never_repeated_nor_shared_with_a_fork() -> None:
    ids = [new_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 and REQUEST_ID.match(i) for i in ids)
    new_id()  # the pool now holds ids a fork would inherit
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, to the parent
        try:
            os.write(write, "".join(new_id() for _ in range(8)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        child = f.read()
    parent = "".join(new_id() for _ in range(8))
    assert len(child) == len(parent) == 8 * 32
    assert {child[i : i + 32] for i in range(0, 256, 32)}.isdisjoint(
        parent[i : i + 32] for i in range(0, 256, 32)
    )


def test_a_flushed_batch_counts_as_the_same_requests_counted_one_by_one(tmp_path: Path) -> None:
    requests = [
        ("/a", "GET", 200, 0.001),
        ("/a", "GET", 201, 0.3),
        ("", "BREW", 503, 12.0),
        ("/b/{id}", "POST", 404, 0.05),
        ("/a", "GET", 200, 0.0049),
        ("/a", "GET", 99, 0.0),
        ("/a", "GET", 200, 0.005),  # on a bucket's bound: counted in it (le)
        ("/a", "GET", 200, 10.0),
        ("/a", "GET", 200, 0.0051),
    ]
    rendered = []
    for batch in (False, True):
        client = Client(tmp_path / str(batch), background=False, pid_label=None, prog="m")
        m = RequestMetrics(client, background=False)
        if batch:
            for part in (requests[:2], requests[2:]):
                grouped: dict[tuple[str, str, int], list[float]] = {}
                for route, method, status, seconds in part:
                    grouped.setdefault((route, method, status), []).append(seconds)
                m.observe_many(grouped)
        else:
            for r in requests:
                m.observe(*r)
        m.push()
        rendered.append(client.render())
        client.close()
    assert rendered[0] == rendered[1]
    assert 'http_requests_total{method="GET",route="/a",status="2xx"}=6' in rendered[1]


def test_every_character_a_request_id_may_have_needs_no_escape() -> None:
    """The middleware writes request ids unescaped: begin() makes them or accepts only these."""
    allowed = [chr(i) for i in range(0x110000) if REQUEST_ID.match(chr(i))]
    assert len(allowed) == 26 + 26 + 10 + len("._:@+=/-")
    assert all(_quoted_safe(c) and c != " " for c in allowed)


_secret_text = st.one_of(
    hostile_text,
    st.sampled_from(["api_key=k1", "a=1&api_key=k2&b", "token=&x", "?api_key=k1#f", "page=2"]),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.tuples(*[_secret_text] * 8),  # method, path, query, protocol, client, ...
            st.dictionaries(note_names, note_values, max_size=4),
            st.integers(100, 999),
            st.integers(0, 2**40),
            st.floats(1.0, 7e9),
            st.floats(0.0, 1e5),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_the_combined_line_from_kept_pieces_is_the_line_written_field_by_field(
    tmp_path_factory: Any, requests: list[Any]
) -> None:
    """Each request twice (the second time every piece comes from the kept ones), then the
    next: the line is what combined_with_pairs writes from the same fields and notes --
    hostile text, secret parameters in query and referer, notes of every type, 1 / True /
    1.0 one after another under one name; path, query, referer and user agent as str (WSGI)
    or as the bytes an ASGI server gives (read as Latin-1)."""
    tmp = tmp_path_factory.mktemp("k")
    core = _core(tmp, "combined")
    expected = []
    for fields, notes, status, nbytes, start, seconds, raw in requests:
        if raw:
            b = [x.encode("utf-8", "surrogatepass") for x in fields]
            given = (fields[0], b[1], b[2], fields[3], fields[4], b[5], b[6], fields[7])
            fields = tuple(x.decode("latin-1") if type(x) is bytes else x for x in given)
        else:
            given = fields
        for _ in range(2):
            ctx = core.begin("rid-2", None)
            ctx.notes.update(notes)
            core.finish(ctx, start, seconds, status, nbytes, lambda _, f=given: f, None)
            method, path, query, protocol, client, referer, agent, route = fields
            query, referer = core._unkeyed(query, referer)
            user, pairs = core._pairs(notes, None, None) if notes else ("", "")
            line = combined_with_pairs(
                int(start * 1_000_000), "web1", client, method, path, query, protocol,
                status, nbytes, referer, agent, "rid-2", route, int(seconds * 1_000_000),
                user, pairs,
            )  # fmt: skip
            expected.append(line)
    core.close()
    assert (tmp / "combined.log").read_text(encoding="utf-8").split("\n")[:-1] == expected


def test_no_api_key_is_kept_with_the_pieces_of_a_line(tmp_path: Path) -> None:
    core = _core(tmp_path, "combined")
    for query, referer, notes in (
        ("api_key=SECRET1&page=2", "", {"user_id": 5}),
        ("page=2", "https://a.example/?token=SECRET2", {"api_key": "SECRET3"}),
        ("page=2", "", {"api_key": "SECRET4", "user_id": 5}),
    ):
        ctx = core.begin(None, None)
        ctx.notes.update(notes)
        fields = ("GET", "/p", query, "HTTP/1.1", "10.0.0.1", referer, "ua", "/p")
        core.finish(ctx, 1.7e9, 0.001, 200, 5, lambda _, f=fields: f, None)
    kept = repr((core._targets, core._parts))
    assert "SECRET" not in kept
    assert "page=2" in kept  # what holds no key is kept
    core.close()
    text = (tmp_path / "combined.log").read_text()
    assert "SECRET" not in text and text.count("fp:") == 4


def test_equal_notes_of_other_types_are_not_taken_for_kept_ones(tmp_path: Path) -> None:
    """1, True and 1.0 are equal dict keys; 0.0 and -0.0 too: each writes its own text."""
    core = _core(tmp_path, "combined")
    values = [1, True, 1.0, 1, 0, False, 0.0, -0.0, None, "", "1", 1]
    for v in values:
        ctx = core.begin("rid-3", None)
        ctx.notes.update(x=v, user_id=v)
        core.finish(ctx, 1.7e9, 0.001, 200, 5, _fields, None)
    core.close()
    lines = (tmp_path / "combined.log").read_text().splitlines()
    got = [(parse_line(x).notes.get("x"), parse_line(x).notes.get("user_id")) for x in lines]
    text = ["1", "true", "1.0", "1", "0", "false", "0.0", "-0.0", "", "", "1", "1"]
    assert got == [(t, t) for t in text]  # an empty user_id is a pair, not the %u field
