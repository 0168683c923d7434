"""Backfill history from OpenMetrics text (the format ``promtool tsdb create-blocks-from
openmetrics`` reads): migrations from Prometheus, and data for monitor backtests.

Streams the file in batches so its size does not matter; good lines are imported even when
others are bad, and every bad line is returned with its line number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from signalbox.metrics.parse.lex import LineError
from signalbox.metrics.parse.openmetrics import iter_openmetrics
from signalbox.metrics.samples import MetricMeta, Sample
from signalbox.metrics.sql.store import SQLMetricStore

BATCH = 50_000


@dataclass
class ImportReport:
    samples: int = 0
    errors: list[LineError] = field(default_factory=list)
    first_ms: int | None = None
    last_ms: int | None = None


def import_openmetrics(
    store: SQLMetricStore,
    lines: Iterable[str],
    source: str,
    *,
    progress: Callable[[ImportReport], None] | None = None,
    batch_size: int = BATCH,
) -> ImportReport:
    """Import ``lines`` a batch of ``batch_size`` samples at a time (a transaction each),
    then rebuild the rollups over what they covered. A batch's raw partitions are created
    together (:meth:`~signalbox.metrics.sql.partitions.PartitionTables.ensure_raw`): an
    import of days writes hundreds of them."""
    report = ImportReport()
    batch: list[Sample] = []
    metas: list[MetricMeta] = []

    def flush() -> None:
        if batch:
            store.write(batch, 0)
            ts = [s.timestamp_ms for s in batch if s.timestamp_ms is not None]
            lo, hi = min(ts), max(ts)
            report.first_ms = lo if report.first_ms is None else min(report.first_ms, lo)
            report.last_ms = hi if report.last_ms is None else max(report.last_ms, hi)
            report.samples += len(batch)
            batch.clear()
            if progress:
                progress(report)

    for item in iter_openmetrics(lines, source):
        if isinstance(item, Sample):
            batch.append(item)
            if len(batch) >= batch_size:
                flush()
        elif isinstance(item, MetricMeta):
            metas.append(item)
        else:
            report.errors.append(item)
    flush()
    store.write_metadata(metas)
    if report.first_ms is not None and report.last_ms is not None:
        store.rebuild_rollups(report.first_ms, report.last_ms + 1)
    return report
