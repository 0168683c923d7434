"""What the tests of the store's process-wide caches share (the packed-unit cache,
``metrics/sql/unitcache.py``, and the raw samples cache, ``metrics/sql/rawcache.py``): a
store per backend with its URL for another process, the answers of a set of range queries
to the bit, and those answers with the cache off, cold and warm."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from signalbox.clock import FrozenClock
from signalbox.durations import Tier
from signalbox.query import Engine
from tests.metrics.test_row_sealed import _bits
from tests.stores import pg_schema_url, sqlite_url


def open_store(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tiers: tuple[Tier, ...],
    now_ms: int,
    **options: Any,
) -> Iterator[tuple[Any, str]]:
    """(store, its URL for another process) on the backend ``request.param`` names."""
    from signalbox.metrics.sql.store import SQLMetricStore
    from signalbox.storage import open_database

    def make(url: str) -> Iterator[tuple[Any, str]]:
        s = SQLMetricStore(
            open_database(url), tiers=tiers, clock=FrozenClock(now_ms / 1000), **options
        )
        try:
            yield s, url
        finally:
            s.close()

    if request.param == "sqlite":
        yield from make(sqlite_url(tmp_path_factory.mktemp("cache")))
    else:
        with pg_schema_url() as url:
            yield from make(url)


@contextlib.contextmanager
def fresh(cache: ModuleType) -> Iterator[None]:
    """The process's cache of module ``cache`` at its default size and empty, before and
    after."""
    cache.configure(cache.DEFAULT_MB)
    cache.CACHE.clear()
    try:
        yield
    finally:
        cache.configure(cache.DEFAULT_MB)
        cache.CACHE.clear()


def answers(
    store: Any, queries: tuple[str, ...], name: str, start: int, end: int, step: int
) -> list[Any]:
    """Each query (``{n}``: the metric's name) over the range, to the bit, with warnings."""
    out = []
    for q in queries:
        got = Engine(store).range(q.format(n=name), start, end, step)
        out.append((q, _bits(got), sorted(got.warnings)))
    return out


@contextlib.contextmanager
def off(cache: ModuleType) -> Iterator[None]:
    """No cache meanwhile; the process's cache as it was afterwards."""
    kept = cache.CACHE
    cache.CACHE = type(kept)(0)
    try:
        yield
    finally:
        cache.CACHE = kept


def off_cold_warm(cache: ModuleType, answer: Callable[[], list[Any]]) -> list[Any]:
    """``answer()`` with the cache off, cold and warm: the same, the cold ones putting
    blocks in, the warm ones taken from them."""
    with off(cache):
        want = answer()
    cache.CACHE.clear()
    cold = answer()
    assert len(cache.CACHE)  # what was read went in
    hits, misses = cache.CACHE.hits, cache.CACHE.misses
    warm = answer()
    assert cache.CACHE.hits > hits  # and was read from it
    assert cache.CACHE.misses == misses
    assert cold == want
    assert warm == want
    return want


def other_process(script: str, args: dict[str, Any]) -> None:
    """``script`` run by another Python process on this tree, ``args`` as JSON in its
    ``sys.argv[1]``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path.cwd() / "src"), str(Path.cwd())])
    subprocess.run(
        [sys.executable, "-c", script, json.dumps(args)], check=True, env=env, timeout=120
    )
