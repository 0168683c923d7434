"""On PostgreSQL, an API request leaves no connection ``idle in transaction``.

A read that leaves its transaction open holds AccessShareLocks until the connection's next
statement: retention's ``DROP TABLE`` then waits forever. This runs the app exactly as
``serve`` wires it (``build_services`` over ``open_metric_store`` from a ``signalbox.toml``)
and asks PostgreSQL itself, through ``pg_stat_activity``, what the app's connections do.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

from signalbox.config import load_settings
from signalbox.metrics.samples import MetricMeta, Sample
from signalbox.runtime import open_metric_store
from signalbox.server.app import AppOptions, create_app
from signalbox.server.serve import build_services
from tests.stores import PG_BASE, pg_schema_url

MONITORS = """
- name: load_high
  description: The host is overloaded.
  query: load1
  warning: "> 4"
"""


def activity(application_name: str) -> list[tuple[str, str]]:
    """``(state, query)`` of every backend connected under ``application_name``."""
    with psycopg.connect(PG_BASE, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT state, query FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    return [(str(state), str(query)) for state, query in rows]


@pytest.mark.service("postgresql")
def test_no_connection_is_left_idle_in_transaction_after_api_requests(tmp_path: Path) -> None:
    app_name = f"sbtest_api_{uuid.uuid4().hex[:8]}"
    with pg_schema_url() as url:
        (tmp_path / "monitors").mkdir()
        (tmp_path / "monitors" / "load.yaml").write_text(MONITORS)
        (tmp_path / "signalbox.toml").write_text(
            f'store = "{url}&application_name={app_name}"\nhost = "web1"\n'
        )
        settings = load_settings(str(tmp_path / "signalbox.toml"))
        store = open_metric_store(settings)
        try:
            services = build_services(settings, store)
            now_ms = services.now_ms()
            store.write(
                [
                    Sample("load1", (("host", "web1"),), 5.0 + i, now_ms - i * 15_000)
                    for i in range(8)
                ],
                now_ms,
            )
            store.write_metadata([MetricMeta("load1", "gauge", "One-minute load.")])
            assert services.monitors is not None
            from signalbox.monitors.engine.runner import MonitorRunner

            MonitorRunner.from_settings(settings, store, store.db).run_pass(now_ms)

            app = create_app(services, AppOptions(stale_after_s=settings.metrics.stale_after_s))
            t = now_ms / 1000
            requests = [
                ("/metrics", {}),
                ("/api/v1/query", {"query": "avg_over_time(load1[5m])"}),
                (
                    "/api/v1/query_range",
                    {"query": "load1", "start": t - 300, "end": t, "step": "15"},
                ),
                ("/api/v1/series", {"match[]": "load1"}),
                ("/api/v1/labels", {}),
                ("/api/v1/label/host/values", {}),
                ("/", {}),
                ("/api/v1/monitors", {}),
                ("/api/v1/monitors/load_high", {}),
                ("/-/ready", {}),
            ]
            # serve's services check tokens: reads are open to a loopback peer only
            with TestClient(app, client=("127.0.0.1", 50000)) as c:
                for _round in range(3):  # the threadpool spreads requests over threads
                    for path, params in requests:
                        r = c.get(path, params=params)
                        assert r.status_code == 200, (path, r.text)
                assert "load1" in c.get("/metrics").text
                assert c.get("/api/v1/monitors/load_high").json()["data"]["monitor"]["state"] == (
                    "WARNING"
                )
                seen = activity(app_name)
            assert seen, "the app's connections were not found in pg_stat_activity"
            stuck = [q for state, q in seen if state.startswith("idle in transaction")]
            assert stuck == [], f"connections left idle in transaction, last statements: {stuck}"
        finally:
            store.close()
    assert activity(app_name) == []  # closing the store closed every thread's connection
