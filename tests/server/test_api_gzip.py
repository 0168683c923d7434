"""gzip of the query API's answers: only to clients that accept it, the same JSON once
decompressed, kept beside the cached answer and gone with it (SQLite and PostgreSQL)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.metrics.samples import Sample
from signalbox.server.encoding import GZIP_MIN_BYTES, accepts_gzip, gzip_body
from tests.server.test_resultcache import BACKENDS, Site, open_site

# httpx decompresses by itself; these tests read the bytes as they came
RAW = {"Accept-Encoding": "gzip"}
PLAIN = {"Accept-Encoding": "identity"}


@pytest.fixture(params=BACKENDS)
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    with open_site(request.param, tmp_path) as s:
        # enough series for an answer past GZIP_MIN_BYTES
        t = (s.t0 - 30) * 1000
        s.store.write([Sample("big", (("i", str(i)),), i / 7, t) for i in range(60)], t)
        yield s


@dataclass
class Raw:
    headers: Mapping[str, str]
    raw: bytes  # the body as sent (httpx would decompress it)


def get_raw(site: Site, params: dict[str, str], headers: dict[str, str]) -> Raw:
    with site.client.stream("GET", "/api/v1/query_range", params=params, headers=headers) as r:
        assert r.status_code == 200
        return Raw(r.headers, b"".join(r.iter_raw()))


def test_a_client_that_accepts_gzip_gets_the_same_json_gzipped(site: Site) -> None:
    params = site.range_params("big", back_s=300)
    plain = get_raw(site, params, PLAIN)
    assert "content-encoding" not in plain.headers
    assert len(plain.raw) >= GZIP_MIN_BYTES
    packed = get_raw(site, params, RAW)  # a cache hit: its gzip form made now
    assert packed.headers["content-encoding"] == "gzip"
    assert gzip.decompress(packed.raw) == plain.raw
    assert len(packed.raw) < len(plain.raw) / 3
    for r in (plain, packed):
        assert r.headers["vary"] == "Accept-Encoding"
    # the gzip form is kept beside the answer: the next asks for it get those bytes
    size = site.cache.size_bytes
    again = get_raw(site, params, RAW)
    assert again.raw == packed.raw
    assert site.cache.size_bytes == size


def test_a_fresh_answer_is_gzipped_in_its_query_thread_and_kept(site: Site) -> None:
    params = site.range_params("big", back_s=300)
    first = get_raw(site, params, RAW)  # a miss: evaluated and gzipped together
    assert first.headers["content-encoding"] == "gzip"
    hits = site.cache.hits
    second = get_raw(site, params, RAW)
    assert site.cache.hits == hits + 1
    assert second.raw == first.raw
    plain = get_raw(site, params, PLAIN)
    assert gzip.decompress(first.raw) == plain.raw


def test_a_gzipped_answer_goes_with_its_entry_when_the_data_changes(site: Site) -> None:
    params = site.range_params("big", back_s=300)
    before = gzip.decompress(get_raw(site, params, RAW).raw)
    t = (site.t0 - 15) * 1000
    site.store.write([Sample("big", (("i", "0"),), 1e6, t)], t)
    after = gzip.decompress(get_raw(site, params, RAW).raw)
    assert after != before and b"1000000" in after
    assert after == get_raw(site, params, PLAIN).raw


def test_small_answers_and_clients_that_do_not_ask_get_plain_json(site: Site) -> None:
    r = site.client.get("/api/v1/query", params={"query": "1"}, headers=RAW)
    assert r.status_code == 200 and "content-encoding" not in r.headers
    refused = get_raw(site, site.range_params("big", back_s=300), {"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers
    none = get_raw(site, site.range_params("big", back_s=300), {"Accept-Encoding": ""})
    assert "content-encoding" not in none.headers


def test_an_uncached_query_is_gzipped_too(site: Site) -> None:
    # relative to now (no time=): never cached, gzipped in its query thread
    r = site.client.get("/api/v1/query", params={"query": "big"}, headers=RAW)
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert len(r.json()["data"]["result"]) == 60  # httpx decompressed it


def scope(*values: bytes) -> dict[str, object]:
    return {"headers": [(b"accept-encoding", v) for v in values]}


def test_accept_encoding_as_clients_send_it() -> None:
    assert accepts_gzip(scope(b"gzip"))  # Go's net/http (Grafana, promtool)
    assert accepts_gzip(scope(b"gzip, deflate, br"))
    assert accepts_gzip(scope(b"deflate, GZIP;q=0.5"))
    assert accepts_gzip(scope(b"x-gzip"))
    assert accepts_gzip(scope(b"identity", b"gzip"))
    assert not accepts_gzip(scope())
    assert not accepts_gzip(scope(b"gzip;q=0"))
    assert not accepts_gzip(scope(b"gzip;q=nonsense"))
    assert not accepts_gzip(scope(b"deflate, br"))
    assert not accepts_gzip(scope(b"gzipped"))


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=5000))
def test_gzip_body_round_trips_and_leaves_short_bodies(body: bytes) -> None:
    packed = gzip_body(body)
    if len(body) < GZIP_MIN_BYTES:
        assert packed is None
    else:
        assert packed is not None and gzip.decompress(packed) == body
