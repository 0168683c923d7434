"""The metric store's own data version on PostgreSQL (signalbox.metrics.dataversion): a
compaction folds the counter rows of backends that are gone into its own, so the table does
not grow by a row per connection ever made, and the version never goes back."""

from __future__ import annotations

import pytest

from signalbox.metrics import dataversion
from signalbox.metrics.samples import Sample
from signalbox.metrics.sql.store import SQLMetricStore
from signalbox.storage import open_database
from tests.stores import pg_schema_url

pytestmark = pytest.mark.service("postgresql")


def test_compaction_folds_the_rows_of_gone_backends_and_the_version_only_grows() -> None:
    with pg_schema_url() as url:
        db = open_database(url)
        store = SQLMetricStore(db)
        try:
            store.write([Sample("x", (), 1.0)], 1_700_000_000_000)
            # rows left by connections that are gone (no backend has these pids)
            db.execute(
                "INSERT INTO metric_data_version (backend, version) "
                "VALUES (-1, 5), (-2, 7), (2147483000, 11)"
            )
            before = dataversion.read(db)
            assert before is not None
            rows_before = db.query("SELECT count(*) FROM metric_data_version")[0][0]
            assert rows_before >= 4
            store.compact(1_700_000_100_000)
            after = dataversion.read(db)
            assert after is not None and after == before + 1
            backends = {r[0] for r in db.query("SELECT backend FROM metric_data_version")}
            assert not backends & {-1, -2, 2147483000}
            alive = {r[0] for r in db.query("SELECT pid FROM pg_stat_activity")}
            assert backends <= alive  # only live writers keep a row of their own
            # an ordinary write after the fold still raises the version
            store.write([Sample("x", (), 2.0)], 1_700_000_200_000)
            assert dataversion.read(db) == after + 1
        finally:
            store.close()
