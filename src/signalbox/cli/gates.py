"""``signalbox gates check``: every configured gate, probed now: open or closed, and why.

The view an operator needs when jobs are deferred ("which gate, and what did it see?") and a
config author needs before relying on a gate. Gates are probed in parallel (each bounded by
its own timeouts), so one hung database costs its timeout once, not per gate.
Exit codes: 0 every gate open, 1 any closed, 2 usage or configuration error.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from signalbox.cli.base import Context, handle_errors, pass_ctx, prints_data


@click.group("gates")
def gates_group() -> None:
    """Load-feedback gates ([gates.NAME] in signalbox.toml)."""


def _probe(gate: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    d = gate.check()
    return d, (time.perf_counter() - t0) * 1000


def _compact(reading: dict[str, Any]) -> str:
    """The reading on one line, without the marks (the reason already states them)."""
    shown = {k: v for k, v in reading.items() if k != "marks"}
    return json.dumps(shown, separators=(",", ":"), default=str, sort_keys=True)


@gates_group.command("check")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per gate, as a list.")
@pass_ctx
@handle_errors
@prints_data
def check_cmd(ctx: Context, names: tuple[str, ...], as_json: bool) -> None:
    """Probe every configured gate (or only NAMES) now and print open/closed, reading and why.

    Exit 0 when every gate is open, 1 when any is closed (a probe that fails closes its
    gate), 2 for a configuration error.
    """
    from signalbox.cli.base import describe_config_source
    from signalbox.exceptions import UsageError
    from signalbox.gates.settings import build_gate

    settings = ctx.settings
    specs = dict(settings.gates)
    unknown = [n for n in names if n not in specs]
    if unknown:
        known = ", ".join(sorted(specs)) or "none"
        raise UsageError(f"no gate named {', '.join(unknown)} (configured: {known})")
    if names:
        specs = {n: specs[n] for n in names}
    if not specs:
        click.echo(
            f"no gates configured (config: {describe_config_source(settings.source)}); "
            "declare them as [gates.NAME] tables",
            err=True,
        )
        if as_json:
            click.echo("[]")
        return
    gates = {name: build_gate(spec, settings) for name, spec in specs.items()}
    with ThreadPoolExecutor(max_workers=min(8, len(gates))) as pool:
        results = dict(zip(gates, pool.map(_probe, gates.values()), strict=True))
    if as_json:
        out = [
            {
                "name": name,
                "kind": specs[name].kind,
                "open": d.open,
                "reason": d.reason,
                "delay_s": d.delay_s,
                "reading": d.reading,
                "probe_ms": round(ms, 1),
            }
            for name, (d, ms) in results.items()
        ]
        click.echo(json.dumps(out, indent=2, default=str))
    else:
        width = max(len(n) for n in results)
        for name, (d, ms) in results.items():
            state = "open  " if d.open else "CLOSED"
            click.echo(f"{name:<{width}}  {state}  {specs[name].kind}  {d.reason}  ({ms:.0f} ms)")
            if d.reading:
                click.echo(f"{'':<{width}}  reading: {_compact(d.reading)}")
    for g in gates.values():
        close = getattr(g, "close", None)
        if callable(close):
            close()
    if not all(d.open for d, _ in results.values()):
        sys.exit(1)
