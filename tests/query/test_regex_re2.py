"""Label matchers run on RE2: linear time whatever the pattern, Prometheus' syntax and meaning.

Issue 8: ``{__name__=~"(((((((((((.*)*)*)*)*)*)*)*)*)*)*)*x"}`` held ``serve`` at 100% CPU for
38 minutes and ``x{v=~"(a+)+b"}`` took 92 s over 30-character values, both on Python's
backtracking ``re``. Here they answer in milliseconds, directly and through the HTTP API of
the in-process app over SQLite and PostgreSQL. RE2-only syntax (``[[:alpha:]]``, ``\\pL``)
works, Python-only syntax (lookahead, backreference, possessive) is a 400 naming RE2's
reason, and the plain-Python fast paths agree with RE2 itself on random input.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from signalbox.exceptions import QueryError
from signalbox.metrics.labelregex import MEMO_SIZE, LabelRegex, LabelRegexError
from signalbox.metrics.samples import Matcher, Sample, series_matches
from signalbox.monitors.definitions.load import load_monitors
from signalbox.query.parse import parse_expr
from tests.server.conftest import NOW, SQL_BACKENDS, open_site

NESTED_STARS = "(((((((((((.*)*)*)*)*)*)*)*)*)*)*)*x"
NESTED_PLUS = "(a+)+b"
N = 5000  # series named with 30+ characters, and as many x{v=...} with 30+ character values


def long_name(i: int) -> str:
    return f"{'a' * 30}_{i}"


def long_value(i: int) -> str:
    return f"{'a' * 30}{i}"


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging should a backtracking engine ever come back (SIGALRM). The
    tests' own bounds are on this process's CPU time (``time.process_time``), not the wall
    clock: other processes loading the machine (CI, a parallel suite) do not fail them,
    and a backtracking engine still would (``(a+)+b`` over 30 a's is ~2^30 steps)."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"still matching after {seconds}s: the regex engine backtracks")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- the pathological patterns ------------------------------------------------------------


def test_pathological_patterns_are_linear_over_ten_thousand_long_values() -> None:
    values = [long_name(i) for i in range(N)] + [long_value(i) for i in range(N)]
    stars, plus = Matcher("__name__", "=~", NESTED_STARS), Matcher("v", "=~", NESTED_PLUS)
    started = time.process_time()
    with deadline(10):
        hits = [v for v in values if stars.matches(v) or plus.matches(v)]
    elapsed = time.process_time() - started
    assert hits == []
    assert elapsed < 0.5, f"{elapsed:.3f}s for {2 * len(values)} matches"
    # and they still mean what they say
    assert stars.matches("a" * 30 + "x") and stars.matches("x")
    assert plus.matches("a" * 30 + "b") and not plus.matches("b")


@pytest.fixture(params=SQL_BACKENDS)
def long_values_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    with open_site(request.param, tmp_path) as site:
        t0 = int(NOW * 1000)
        samples = [Sample(long_name(i), (), 1.0, t0) for i in range(N)]
        samples += [Sample("x", (("v", long_value(i)),), 2.0, t0) for i in range(N)]
        site.store.write(samples, t0)
        with site.client() as c:
            yield c


@pytest.mark.parametrize(
    ("query", "selected"),
    [
        (f'{{__name__=~"{NESTED_STARS}"}}', N),  # every x{v=...}, none of the long names
        (f'x{{v=~"{NESTED_PLUS}"}}', 0),
        (f'{{__name__!~"{NESTED_STARS}", __name__=~"a+_[0-9]+"}}', N),
        (f'x{{v!~"{NESTED_PLUS}"}}', N),
    ],
)
def test_pathological_queries_answer_quickly_through_the_http_api(
    long_values_client: TestClient, query: str, selected: int
) -> None:
    started = time.process_time()
    with deadline(10):
        r = long_values_client.get("/api/v1/query", params={"query": query, "time": NOW})
    elapsed = time.process_time() - started
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]["result"]) == selected
    assert elapsed < 1.0, f"{query}: {elapsed:.3f}s"


def test_series_endpoint_with_a_pathological_match_is_quick(
    long_values_client: TestClient,
) -> None:
    started = time.process_time()
    with deadline(10):
        r = long_values_client.get("/api/v1/series", params={"match[]": f'x{{v=~"{NESTED_PLUS}"}}'})
    assert r.status_code == 200 and r.json()["data"] == []
    assert time.process_time() - started < 1.0


# -- Prometheus' syntax and meaning ---------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("[[:alpha:]]+", ["abcXYZ"], ["abc1", ""]),  # POSIX classes: RE2 knows them
        ("[[:^digit:]]+", ["ab"], ["a1"]),
        ("[[:digit:][:space:]]+", ["1 2"], ["1a"]),
        (r"\pL+", ["héllo", "日本"], ["a1"]),  # Unicode classes
        (r"\p{Greek}+", ["αβγ"], ["abc"]),
        (r"\PN+", ["ab"], ["a٣"]),
        (r"\d+", ["123"], ["١٢٣"]),  # \d is ASCII only, as in Go
        (r"\Qa.b\E", ["a.b"], ["axb"]),  # quoted literal text
        ("(?i)ERROR", ["error", "Error"], ["errors"]),
        ("a(?i)b", ["ab", "aB"], ["AB"]),  # flags from where they stand
        ("(?U)a+", ["aaa"], ["b"]),
        ("a.b", ["a\nb", "axb"], ["ab"]),  # (?s): dot matches a newline, as Prometheus wraps it
        ("b", ["b"], ["abc", "ab", "bc"]),  # fully anchored
        ("a|b", ["a", "b"], ["ab", "ba"]),  # anchoring covers the whole alternation
        ("", [""], ["a"]),
        ("^api$", ["api"], ["api2", "xapi"]),
        ("(?P<x>a)+", ["aa"], ["b"]),
        (r"\x{65e5}", ["日"], ["x"]),
    ],
)
def test_re2_syntax_and_prometheus_semantics(pattern: str, yes: list[str], no: list[str]) -> None:
    m = Matcher("l", "=~", pattern)
    for v in yes:
        assert m.matches(v), (pattern, v)
        assert not Matcher("l", "!~", pattern).matches(v)
    for v in no:
        assert not m.matches(v), (pattern, v)


@pytest.mark.parametrize(
    ("pattern", "said"),
    [
        ("(?=a)a", "invalid perl operator: (?="),
        ("(?!a)b", "invalid perl operator: (?!"),
        ("(?<=a)b", "invalid perl operator: (?<"),
        (r"(a)\1", r"invalid escape sequence: \1"),
        ("a++", "bad repetition operator: ++"),
        ("(?P=n)", "invalid perl operator: (?P"),
        ("(", "missing ): ("),
        ("a)|(b", "unexpected ): a)|(b"),  # not quietly (?s:a)|(b)
        ("[[:word:]", "missing ]"),
        ("x{1001}", "invalid repetition size: {1001}"),
        ("((a{100}){100}){100}", "invalid repetition size"),  # too big to build, not a hang
    ],
)
def test_python_only_or_broken_syntax_is_refused_with_re2s_reason(pattern: str, said: str) -> None:
    with pytest.raises(LabelRegexError) as direct:
        Matcher("l", "=~", pattern)
    assert said in direct.value.message
    with pytest.raises(QueryError) as parsed:
        parse_expr(f"up{{job!~`{pattern}`}}")
    msg = str(parsed.value)
    assert msg.startswith(f"invalid regular expression {pattern!r} for label 'job' (RE2 syntax): ")
    assert said in msg
    assert parsed.value.position == len("up{job!~")
    assert parsed.value.construct == "regex"


@pytest.fixture
def small_client(tmp_path: Path) -> Iterator[TestClient]:
    with open_site("sqlite", tmp_path) as site:
        t0 = int(NOW * 1000)
        site.store.write(
            [
                Sample("up", (("job", "api"),), 1.0, t0),
                Sample("up", (("job", "db2"),), 1.0, t0),
                Sample("up", (("job", "Web"),), 0.0, t0),
            ],
            t0,
        )
        with site.client() as c:
            yield c


@pytest.mark.parametrize(
    ("matcher", "jobs"),
    [
        ('job=~"[[:alpha:]]+"', ["Web", "api"]),
        ('job=~"[[:lower:]]+[[:digit:]]"', ["db2"]),
        ('job=~"(?i)web"', ["Web"]),
        ('job!~"a.*"', ["Web", "db2"]),
        ('job=~"api|db2"', ["api", "db2"]),
    ],
)
def test_re2_syntax_selects_through_the_http_api(
    small_client: TestClient, matcher: str, jobs: list[str]
) -> None:
    for method in ("get", "post"):
        params = {"query": f"up{{{matcher}}}", "time": str(NOW)}
        if method == "get":
            r = small_client.get("/api/v1/query", params=params)
        else:
            r = small_client.post("/api/v1/query", data=params)
        assert r.status_code == 200, r.text
        got = sorted(s["metric"]["job"] for s in r.json()["data"]["result"])
        assert got == jobs


@pytest.mark.parametrize("pattern", ["(?=a)a", r"(a)\1", "a++", "("])
def test_python_only_syntax_is_a_400_naming_the_matcher(
    small_client: TestClient, pattern: str
) -> None:
    query = f"up{{job=~`{pattern}`}}"
    for path, params in (
        ("/api/v1/query", {"query": query}),
        ("/api/v1/query_range", {"query": query, "start": NOW - 60, "end": NOW, "step": 15}),
        ("/api/v1/series", {"match[]": query}),
    ):
        r = small_client.get(path, params=params)
        assert r.status_code == 400, (path, r.text)
        body = r.json()
        assert body["status"] == "error" and body["errorType"] == "bad_data"
        assert (
            f"invalid regular expression {pattern!r} for label 'job' (RE2 syntax)" in body["error"]
        )


def test_monitor_with_a_python_only_regex_fails_to_load_naming_file_and_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        '- name: m\n  description: why\n  query: \'up{job=~"(?=api)a.*"}\'\n  critical: "== 0"\n'
    )
    result = load_monitors([path])
    assert result.monitors == ()
    [err] = result.errors
    assert (err.line, err.key) == (3, "query")
    assert "invalid regular expression '(?=api)a.*' for label 'job' (RE2 syntax)" in err.message
    assert "invalid perl operator: (?=" in err.message


# -- fast paths agree with RE2 --------------------------------------------------------------

pieces = st.text(alphabet=st.sampled_from("ab.-_:/|*+?()[]{}^$\\ é日\n"), max_size=6)


def _escape(text: str, how: int) -> str:
    """Three ways people and our planner write a literal: re.escape, every punctuation, none."""
    if how == 0:
        return re.escape(text)
    return "".join(f"\\{c}" if c.isascii() and not (c.isalnum() or c == "_") else c for c in text)


@st.composite
def fast_shapes(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A pattern of a fast-path shape, and literals to build matching values from."""
    how = draw(st.integers(0, 1))
    shape = draw(st.sampled_from(["literal", "set", "prefix", "suffix", "contains"]))
    lits = draw(st.lists(pieces, min_size=1, max_size=5))
    if shape == "set":
        pattern = "|".join(_escape(lit, how) for lit in lits)
        lits = lits[:]
    else:
        lit = draw(pieces.filter(bool)) if shape != "literal" else lits[0]
        body = _escape(lit, how)
        pattern = {
            "literal": body,
            "prefix": body + ".*",
            "suffix": ".*" + body,
            "contains": ".*" + body + ".*",
        }[shape]
        lits = [lit]
    if draw(st.booleans()):
        pattern = f"^{pattern}$" if shape != "set" else pattern
    return pattern, lits


@settings(max_examples=400, deadline=None)
@given(fast_shapes(), st.lists(pieces, max_size=8), st.data())
def test_fast_paths_agree_with_re2(
    shape: tuple[str, list[str]], noise: list[str], data: st.DataObject
) -> None:
    pattern, lits = shape
    rx = LabelRegex(pattern)
    assert rx.kind != "re2", pattern  # each of these shapes is answered without RE2
    values = [*noise, *lits, ""]
    for lit in lits:  # values around the literals, so that matches happen too
        a, b = data.draw(pieces), data.draw(pieces)
        values += [a + lit, lit + b, a + lit + b]
    for v in values:
        assert rx.matches(v) == rx.matches_by_re2(v), (pattern, v, rx.kind)


regex_soup = st.text(alphabet=st.sampled_from("ab.*+?|()[]^$\\d{}1,:-é\n"), max_size=12)


@settings(max_examples=400, deadline=None)
@given(regex_soup, st.lists(st.text(alphabet="ab1é\n-:", max_size=8), max_size=10))
def test_any_pattern_re2_accepts_gives_re2s_answer(pattern: str, values: list[str]) -> None:
    """Fast paths, the required-prefix check and the memo never change an answer."""
    try:
        rx = LabelRegex(pattern)
    except LabelRegexError:
        return
    for v in [*values, *values]:  # twice: the second answer comes from the memo
        assert rx.matches(v) == rx.matches_by_re2(v), (pattern, v, rx.kind)


def test_the_memo_stays_bounded_and_right() -> None:
    m = Matcher("l", "=~", "v[0-9]*[02468]")
    for i in range(3 * MEMO_SIZE):
        assert m.matches(f"v{i}") == (i % 2 == 0)
    assert m.matches("w2") is False  # refused by the required prefix "v"


def test_query_planner_name_sets_take_the_set_fast_path() -> None:
    """query/batch.py selects many names at once as re.escape'd alternatives."""
    names = ["http_requests_total", "up", "a:b_c", "node_load1"]
    m = Matcher("__name__", "=~", "|".join(re.escape(n) for n in names))
    assert m._regex is not None and m._regex.kind == "set"
    assert all(series_matches(n, (), [m]) for n in names)
    assert not series_matches("up2", (), [m])


def test_lone_surrogates_in_values_do_not_raise() -> None:
    m = Matcher("l", "=~", "a[^b]*")
    assert m.matches("a\ud800") is True
    assert Matcher("l", "=~", ".*").matches("\udfff") is True
