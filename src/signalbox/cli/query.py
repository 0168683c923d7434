"""``signalbox query``: read series back with the same engine the API and monitors use."""

from __future__ import annotations

import datetime as dt

import click

from signalbox.cli.base import Context, handle_errors, pass_ctx, prints_data
from signalbox.durations import parse_duration
from signalbox.exceptions import UsageError


def _duration_arg(option: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as e:
        raise UsageError(f"{option} {text!r}: {e}") from None


def _fmt_labels(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest else (name or "{}")


def _ts(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.command("query")
@click.argument("expr")
@click.option(
    "--since",
    metavar="DURATION",
    help="Range query over the last DURATION (e.g. 1h); default: instant query at now.",
)
@click.option(
    "--step",
    metavar="DURATION",
    help="Range query resolution (default: --since / 120, at least 1s).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Prometheus HTTP API JSON (the `data` object)."
)
@pass_ctx
@handle_errors
@prints_data
def query_cmd(ctx: Context, expr: str, since: str | None, step: str | None, as_json: bool) -> None:
    """Evaluate a PromQL expression (the supported subset) against the store.

    Runs under the [query] limits of signalbox.toml (timeout, max_samples), as the HTTP API does.

    Example: signalbox query 'sum by (host) (rate(image_processed_total[5m]))' --since 1h
    """
    from signalbox.limits import Budget, running
    from signalbox.query import parse_expr
    from signalbox.runtime import open_metric_store, query_engine

    since_s = _duration_arg("--since", since)
    step_s = _duration_arg("--step", step)
    if step_s is not None and since_s is None:
        raise UsageError("--step needs --since")
    if step_s is not None and step_s <= 0:
        raise UsageError(f"--step {step!r}: must be positive")
    parsed = parse_expr(expr)
    ctx.existing_store_url()
    store = open_metric_store(ctx.settings)
    budget = Budget(ctx.settings.query)  # the limits the HTTP API's queries run under
    try:
        with running(budget):
            engine = query_engine(store)
            now_ms = int(store.clock.now() * 1000)
            if since_s is None:
                res = engine.instant(parsed, now_ms)
            else:
                st = step_s or max(1.0, since_s / 120)
                res = engine.range(parsed, now_ms - int(since_s * 1000), now_ms, int(st * 1000))
    finally:
        store.close()
    for warning in res.warnings:  # the API's "warnings": where the answer is an estimate
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        import msgspec

        click.echo(msgspec.json.encode(res.to_prometheus()).decode())
        return
    data = res.to_prometheus()
    kind, result = data["resultType"], data["result"]
    if kind in ("scalar", "string"):
        click.echo(result[1])
    elif kind == "vector":
        if not result:
            click.echo("(no data)")
        for item in result:
            click.echo(f"{_fmt_labels(item['metric'])} {item['value'][1]}")
    else:
        if not result:
            click.echo("(no data)")
        for item in result:
            click.echo(_fmt_labels(item["metric"]))
            for t, v in item["values"]:
                click.echo(f"  {_ts(int(float(t) * 1000))}  {v}")
