"""Cost of one metrics call in the application's thread: signalbox's client vs. the ``statsd`` client.

signalbox's ``incr``/``gauge`` update a dict under a lock (a writer thread publishes the
spool file once a second); the ``statsd`` client formats a line and makes one ``sendto``
system call per call. Both run here, same process, same run, so the figures compare.

    .venv/bin/python bench/client_write.py [--calls 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
from collections.abc import Callable

import statsd

from signalbox.metrics.client import Client


def ns_per_call(fn: Callable[[], object], calls: int, repeat: int) -> float:
    """Best of ``repeat`` runs: the least disturbed measurement of the steady state."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    calls, repeat = args.calls, args.repeat

    with (
        tempfile.TemporaryDirectory() as spool,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
    ):
        sink.bind(("127.0.0.1", 0))  # a real listener nobody reads: sendto still does its work
        client = Client(spool, prog="bench", environ={})
        udp = statsd.StatsClient(*sink.getsockname())
        timer = client.timer("bench_step")

        def timed() -> None:
            with timer:
                pass

        cases: list[tuple[str, Callable[[], object]]] = [
            ("empty loop (baseline)", lambda: None),
            ("signalbox incr(name)", lambda: client.incr("bench_total")),
            ("signalbox incr(name, route=...)", lambda: client.incr("bench_total", route="/a")),
            ("signalbox gauge(name, v)", lambda: client.gauge("bench_depth", 3.5)),
            ("signalbox with timer", timed),
            ("statsd (PyPI) incr over UDP", lambda: udp.incr("bench")),
            ("statsd (PyPI) gauge over UDP", lambda: udp.gauge("bench_depth", 3.5)),
        ]
        print(f"{calls:,} calls, best of {repeat}")
        results = {}
        for label, fn in cases:
            results[label] = ns = ns_per_call(fn, calls, repeat)
            print(f"  {label:36s} {ns:8.0f} ns/call")
        ratio = results["statsd (PyPI) incr over UDP"] / results["signalbox incr(name)"]
        print(f"signalbox incr is {ratio:.1f}x faster than statsd's incr over UDP")
        client.close()
        udp.close()


if __name__ == "__main__":
    main()
