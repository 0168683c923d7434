"""How long the query engine takes for an 8-day range query at 1-minute steps.

One series sampled every 10 s for 8 days (69,121 raw samples) in a MemoryMetricStore;
each query covers 11,521 steps. Prints the best of several runs per query, engine time
only (the store select is included, JSON formatting is not). Target: well under 20 ms
for ``x`` and ``avg_over_time(x[5m])``.

    .venv/bin/python bench/query_engine.py
"""

from __future__ import annotations

import math
import time

from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample
from signalbox.query import Engine, parse_expr

DAY_MS = 86_400_000
SCRAPE_MS = 10_000
STEP_MS = 60_000
START_MS = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS
QUERIES = (
    "x",
    "avg_over_time(x[5m])",
    "max_over_time(x[5m])",
    "rate(c[5m])",
    "sum by (job) (rate(c[5m]))",
    "x > 0.5",
    "x * 2 + 1",
)


def build_store() -> MemoryMetricStore:
    store = MemoryMetricStore()
    end = START_MS + 8 * DAY_MS
    samples = []
    for i, ts in enumerate(range(START_MS, end + 1, SCRAPE_MS)):
        samples.append(Sample("x", (("job", "api"),), 0.5 + 0.5 * math.sin(i / 500), ts))
        samples.append(Sample("c", (("job", "api"),), float(i * 3), ts))
    store.write(samples, 0)
    return store


def best_ms(engine: Engine, query: str, runs: int = 7) -> float:
    expr = parse_expr(query)
    end = START_MS + 8 * DAY_MS
    best = math.inf
    for _ in range(runs):
        t0 = time.perf_counter()
        result = engine.range(expr, START_MS, end, STEP_MS)
        best = min(best, time.perf_counter() - t0)
    assert result.matrix, query
    return best * 1000


def main() -> None:
    engine = Engine(build_store())
    print(
        f"8 days at 1m steps ({8 * DAY_MS // STEP_MS + 1} steps), raw samples every {SCRAPE_MS // 1000}s"
    )
    for query in QUERIES:
        print(f"  {query:<32} {best_ms(engine, query):7.2f} ms")


if __name__ == "__main__":
    main()
