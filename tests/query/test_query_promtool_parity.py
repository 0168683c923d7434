"""Our engine against Prometheus itself: every result we compute is written as the expected
output of a ``promtool test rules`` unit test, and promtool must agree.

Evaluation times sit between samples so that the (Prometheus 3) left-open windows we
implement and the closed windows of older promtool releases select the same samples.
"""

from __future__ import annotations

import math
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from signalbox.metrics.memstore import MemoryMetricStore
from signalbox.metrics.samples import Sample, escape_label_value
from signalbox.query import Engine

INTERVAL_S = 15
N_SAMPLES = 48  # 12 minutes of data


def _series() -> dict[str, list[float | None]]:
    rnd = random.Random(20240601)
    counter_a: list[float | None] = [1000.0 + 15 * i for i in range(24)] + [
        3.0 + 15 * i for i in range(24)
    ]  # reset
    counter_b: list[float | None] = [
        500.0 + 0.75 * i * (i - 1) for i in range(N_SAMPLES)
    ]  # accelerating
    web: list[float | None] = [300.0 + 3 * i for i in range(N_SAMPLES)]
    for i in range(14, 20):  # a 90 s gap
        web[i] = None
    temp_a: list[float | None] = [round(rnd.uniform(-5, 35), 2) for _ in range(N_SAMPLES)]
    temp_b: list[float | None] = [round(rnd.uniform(10, 20), 1) for _ in range(N_SAMPLES)]
    temp_c: list[float | None] = [round(rnd.uniform(0, 1), 3) for _ in range(20)] + [None] * (
        N_SAMPLES - 20
    )  # goes stale
    return {
        'http_requests_total{job="api", instance="a"}': counter_a,
        'http_requests_total{job="api", instance="b"}': counter_b,
        'http_requests_total{job="web", instance="a"}': web,
        'errors_total{job="api", instance="a", code="500"}': [
            float(i // 3) for i in range(N_SAMPLES)
        ],
        'errors_total{job="web", instance="a", code="502"}': [
            float(i // 5) * 2 for i in range(N_SAMPLES)
        ],
        'temp{room="a"}': temp_a,
        'temp{room="b"}': temp_b,
        'temp{room="c"}': temp_c,
    }


EXPRESSIONS = [
    "http_requests_total",
    'http_requests_total{job="api"}',
    'http_requests_total{instance!="a"}',
    'temp{room=~"a|c"}',
    '{__name__=~"temp|errors_total", job!="api"}',
    "temp offset 2m",
    "rate(http_requests_total[1m])",
    "rate(http_requests_total[5m])",
    "increase(http_requests_total[2m])",
    "irate(http_requests_total[1m])",
    "rate(http_requests_total[5m] offset 3m)",
    "delta(temp[2m])",
    "deriv(temp[3m])",
    "avg_over_time(temp[2m])",
    "min_over_time(temp[3m])",
    "max_over_time(temp[3m])",
    "sum_over_time(temp[1m])",
    "count_over_time(temp[4m])",
    "last_over_time(temp[2m])",
    "quantile_over_time(0.9, temp[5m])",
    "quantile_over_time(0.25, temp[3m])",
    "sum(rate(http_requests_total[2m]))",
    "sum by (job) (rate(http_requests_total[2m]))",
    "sum without (instance) (rate(http_requests_total[2m]))",
    "avg by (instance) (http_requests_total)",
    "max(temp)",
    "min without (room) (temp)",
    "count by (job) (http_requests_total)",
    "topk(2, temp)",
    "bottomk by (job) (1, http_requests_total)",
    "temp > 20",
    "25 < temp",
    "temp >= bool 15",
    "temp * 2 - 1",
    "100 / temp",
    "temp % 7",
    "temp ^ 2",
    "-temp",
    "temp / 0",
    "rate(errors_total[5m]) / ignoring (code) rate(http_requests_total[5m])",
    "sum by (job) (errors_total) / on (job) sum by (job) (http_requests_total)",
    "abs(temp)",
    "ceil(temp)",
    "floor(temp)",
    "round(temp)",
    "round(temp, 0.5)",
    "clamp_min(temp, 18)",
    "clamp_max(temp, 18)",
    "clamp(temp, 12, 18)",
    "sgn(temp - 15)",
    "sqrt(temp)",
    "ln(temp)",
    "log2(abs(temp))",
    "log10(temp)",
    "exp(temp / 10)",
    "time()",
    "vector(time() / 60)",
    "scalar(temp{room='b'}) * 2",
    "scalar(temp)",
    "absent(temp{room='z', job='x'})",
    "absent(temp)",
    "absent_over_time(temp{room='c'}[1m])",
    "1 + 2 * 3 ^ 2",
    "2 > bool 1",
    "-2 ^ 2",
    "(1 - 1) / 0",
]
EVAL_TIMES_S = [307, 502, 603, 700]  # between the 15 s sample grid points


def _parse_series(spec: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    name, _, rest = spec.partition("{")
    pairs = []
    for part in rest.rstrip("}").split(","):
        k, _, v = part.strip().partition("=")
        pairs.append((k, v.strip('"')))
    return name, tuple(sorted(pairs))


def _labels_text(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    inner = ", ".join(
        f'{k}="{escape_label_value(v)}"' for k, v in sorted(metric.items()) if k != "__name__"
    )
    return f"{name}{{{inner}}}"


def _expected(engine: Engine, expr: str, at_ms: int) -> list[dict[str, Any]]:
    result = engine.instant(expr, at_ms)
    if result.result_type == "scalar":
        assert result.scalar is not None
        return [{"labels": "{}", "value": result.scalar}]
    return [{"labels": _labels_text(s.metric), "value": s.value} for s in result.vector]


@pytest.mark.peer("promtool")
def test_engine_agrees_with_promtool(tmp_path: Path) -> None:
    series = _series()
    store = MemoryMetricStore()
    store.write(
        [
            Sample(*_parse_series(spec), v, i * INTERVAL_S * 1000)
            for spec, values in series.items()
            for i, v in enumerate(values)
            if v is not None
        ],
        0,
    )
    engine = Engine(store)
    input_series = [
        {"series": spec, "values": " ".join("_" if v is None else repr(v) for v in values)}
        for spec, values in series.items()
    ]
    tests = []
    for expr in EXPRESSIONS:
        for at in EVAL_TIMES_S:
            tests.append(
                {
                    "expr": expr,
                    "eval_time": f"{at}s",
                    "exp_samples": _expected(engine, expr, at * 1000),
                }
            )
    doc = {
        "rule_files": [],
        "evaluation_interval": "1s",  # promtool loads samples only up to its last evaluation tick
        "tests": [
            {"interval": f"{INTERVAL_S}s", "input_series": input_series, "promql_expr_test": tests}
        ],
    }
    path = tmp_path / "parity.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=1_000_000))
    promtool = shutil.which("promtool")
    assert promtool is not None
    proc = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        # promtool compares floats exactly and NaN as unequal; accept last-bit differences
        # (Kahan sums, Go's log2) and NaN == NaN, nothing else.
        failures = FAILURE.findall(output)
        assert failures, output
        real = [
            f"{expr} at {at}: ours {exp} / promtool {got}"
            for expr, at, exp, got in failures
            if not _same(_samples(exp), _samples(got))
        ]
        assert not real, "\n".join(real)
    # the comparison was real: many cases had data
    assert sum(1 for t in tests if t["exp_samples"]) > len(tests) * 3 // 4


FAILURE = re.compile(r'expr: "((?:[^"\\]|\\.)*)", time: (\S+),\n\s+exp: (.*)\n\s+got: (.*)')
SAMPLE = re.compile(r"(\{[^}]*\}) (\S+?)(?:,|$)")


def _samples(text: str) -> dict[str, float]:
    return (
        {}
        if text.strip() == "nil"
        else {labels: float(v) for labels, v in SAMPLE.findall(text.strip())}
    )


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    if a.keys() != b.keys():
        return False
    return all(
        (math.isnan(a[k]) and math.isnan(b[k]))
        or math.isclose(a[k], b[k], rel_tol=1e-12, abs_tol=1e-15)
        for k in a
    )


@pytest.mark.peer("promtool")
def test_printed_expressions_are_valid_prometheus(tmp_path: Path) -> None:

    texts = [
        *EXPRESSIONS,
        "sum without () (x)",
        "x offset -5m",
        'x{a="tab\\there \\"q\\" \\\\ é"}',
        "-(1) + -2 * -x ^ 2",
    ]
    assert_promtool_accepts_printed(texts, tmp_path)


def assert_promtool_accepts_printed(texts: list[str], tmp_path: Path) -> None:
    """Each text, parsed and printed back by signalbox, is a rule ``promtool check rules``
    accepts: what format_query and error messages show is valid PromQL."""
    from signalbox.query import parse_expr

    rules = [{"record": f"check:r{i}", "expr": str(parse_expr(t))} for i, t in enumerate(texts)]
    path = tmp_path / "rules.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "printed", "rules": rules}]}, width=1_000_000)
    )
    promtool = shutil.which("promtool")
    assert promtool is not None
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(rules)} rules found" in proc.stdout
