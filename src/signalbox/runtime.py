"""Wiring: build the long-lived objects (stores, collector) from :class:`Settings`.

The CLI and the server call these and nothing else, so every entry point gets the same
store with the same retention, and tests can build the same objects from a dict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from signalbox.clock import Clock
from signalbox.config import Settings
from signalbox.metrics.buffer import PassBuffer
from signalbox.metrics.collect import Collector, SampleSource
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database

if TYPE_CHECKING:
    from signalbox.query import Engine


def open_metric_store(settings: Settings, clock: Clock | None = None) -> SQLMetricStore:
    """A store with its own connection (one per thread that writes)."""
    return SQLMetricStore(
        open_database(settings.store_url),
        raw_retention_s=settings.metrics.retention.raw_s,
        tiers=settings.metrics.retention.tiers,
        clock=clock,
    )


def build_collector(
    settings: Settings,
    store: SQLMetricStore,
    sources: list[SampleSource] | None = None,
    clock: Clock | None = None,
    *,
    hold: bool = False,
) -> Collector:
    """The collector of ``collect --once``; ``hold``: of a long-lived process (``serve``,
    ``agent``), holding the passes the store refuses (``[collect] buffer_max_samples``)."""
    m = settings.metrics
    return Collector(
        store,
        spool_dir=m.spool_dir,
        host=settings.host,
        max_file_bytes=m.max_file_bytes,
        stale_after_s=m.stale_after_s,
        sources=sources,
        clock=clock,
        buffer=PassBuffer(m.buffer_max_samples, max_age_ms=m.retention.raw_s * 1000),
        hold=hold,
    )


def query_engine(store: SQLMetricStore) -> Engine:
    """The query engine over ``store``, told how coarse its coarsest rollup is (so a sparse
    old window is still found)."""
    from signalbox.query import Engine

    return Engine(store, coarsest_resolution_s=store.levels[-1].tier)
