"""Flag evaluation benchmark: ``signalbox.flags.enabled`` vs UnleashClient, the OpenFeature
SDK's in-memory provider, and a plain-Python limit, on one 30% rollout over varying actors.

Contenders, each answering "is flag checkout on for actor user-N" (N varying):

* plain-Python limit: a dict lookup and ``crc32(name:actor) % 100000 < 30000``, inlined in
  the timing loop (no function call at all): the floor any Python flag library pays;
* ``signalbox.flags.enabled(name, actor)``: the public function, the process's client
  installed (memory store, the flag declared at 30%), outside a request; and inside a
  request (``flags.begin_request``: each answer recorded for the instrumentation);
* UnleashClient, bootstrapped locally from a dict (no server, no metrics, no registration),
  a ``flexibleRollout`` of 30% sticky on ``userId``;
* the OpenFeature SDK client over its ``InMemoryProvider`` (a context evaluator doing the
  same crc32 bucket), and the same SDK client over ``signalbox.flags.openfeature``: these
  two run together in alternating chunks of 250 evaluations, since the difference to read
  (a few per cent of ~30 us) is smaller than a loaded machine's drift between two runs.

``--n`` evaluations (default 1,000,000) for ours and the plain limit; the peers are about a
hundred times slower, so they run ``--peer-n`` (default 50,000) per round and are compared
per evaluation. Each round runs every contender once, so the machine's drift hits all alike;
read the "median of per-round ratios" lines. The answers are checked: every contender must
put 30% of the actors in (within 5 sigma, at least 1%).

Usage: .venv/bin/python bench/flag_eval.py [--n 1000000] [--peer-n 50000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from typing import Any

from signalbox import flags
from signalbox.flags import runtime
from signalbox.flags.cache import FlagCache
from signalbox.flags.memstore import MemoryFlagStore
from signalbox.flags.model import FlagDecl, FlagState

NAME = "checkout"
SHARE = 30_000


def plain(actors: list[str]) -> tuple[float, int]:
    table = {NAME: SHARE}
    crc = zlib.crc32
    on = 0
    t0 = time.perf_counter()
    for a in actors:
        if crc(f"{NAME}:{a}".encode()) % 100_000 < table[NAME]:
            on += 1
    return time.perf_counter() - t0, on


def ours(actors: list[str]) -> tuple[float, int]:
    enabled = flags.enabled
    on = 0
    t0 = time.perf_counter()
    for a in actors:
        if enabled(NAME, a):
            on += 1
    return time.perf_counter() - t0, on


def ours_in_request(actors: list[str]) -> tuple[float, int]:
    enabled = flags.enabled
    on = 0
    t0 = time.perf_counter()
    for i in range(0, len(actors), 10):  # a request evaluates ten flags
        token = flags.begin_request(allowed=False, param="features")
        for a in actors[i : i + 10]:
            if enabled(NAME, a):
                on += 1
        flags.end_request(token)
    return time.perf_counter() - t0, on


def unleash_client() -> Any:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    features = {
        "version": 1,
        "features": [
            {
                "name": NAME,
                "enabled": True,
                "strategies": [
                    {
                        "name": "flexibleRollout",
                        "parameters": {"rollout": "30", "stickiness": "userId", "groupId": NAME},
                    }
                ],
            }
        ],
    }
    cache = FileCache("flag-bench", directory=tempfile.mkdtemp(prefix="unleash-bench-"))
    cache.bootstrap_from_dict(features)
    client = UnleashClient(
        url="http://127.0.0.1:9",  # never contacted: fetch_toggles=False, no metrics/registration
        app_name="flag-bench",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
    )
    client.initialize_client(fetch_toggles=False)
    return client


def timed(fn: Callable[[str], bool], actors: list[str]) -> tuple[float, int]:
    on = 0
    t0 = time.perf_counter()
    for a in actors:
        if fn(a):
            on += 1
    return time.perf_counter() - t0, on


def paired(
    fa: Callable[[Any], bool], fb: Callable[[Any], bool], items: list[Any], chunk: int = 250
) -> tuple[tuple[float, int], tuple[float, int]]:
    """Two contenders over the same items in alternating chunks: the machine's drift (other
    processes on a loaded box) hits both alike, so a small difference can be read."""
    ta = tb = 0.0
    on_a = on_b = 0
    clock = time.perf_counter
    for i in range(0, len(items), chunk):
        part = items[i : i + chunk]
        t0 = clock()
        for x in part:
            if fa(x):
                on_a += 1
        t1 = clock()
        for x in part:
            if fb(x):
                on_b += 1
        tb += clock() - t1
        ta += t1 - t0
    return (ta, on_a), (tb, on_b)


def openfeature_clients(cache: FlagCache) -> tuple[Any, Any]:
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.flag_evaluation import FlagResolutionDetails, Reason
    from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

    from signalbox.flags.openfeature import SignalboxProvider

    def rollout(flag: Any, ctx: EvaluationContext) -> FlagResolutionDetails[bool]:
        key = ctx.targeting_key or ""
        on = zlib.crc32(f"{NAME}:{key}".encode()) % 100_000 < SHARE
        return FlagResolutionDetails(flag.variants["on" if on else "off"], reason=Reason.SPLIT)

    memory = InMemoryProvider(
        {NAME: InMemoryFlag("off", {"on": True, "off": False}, context_evaluator=rollout)}
    )
    api.set_provider(memory, domain="inmemory")
    api.set_provider(SignalboxProvider(cache), domain="signalbox")
    return api.get_client(domain="inmemory"), api.get_client(domain="signalbox")


def per_eval_ns(seconds: float, n: int) -> float:
    return seconds / n * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--peer-n", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    logging.disable(logging.WARNING)  # UnleashClient warns about its never-contacted URL

    from openfeature.evaluation_context import EvaluationContext

    decl = FlagDecl(NAME, "the new checkout", "payments", FlagState("rollout", SHARE))
    cache = FlagCache(MemoryFlagStore(), {NAME: decl})
    runtime.install(cache)
    unleash = unleash_client()
    of_memory, of_ours = openfeature_clients(cache)
    actors = [f"user-{i}" for i in range(a.n)]
    peers = actors[: a.peer_n]
    contexts = [EvaluationContext(targeting_key=x) for x in peers]
    unleash_ctx = [{"userId": x} for x in peers]

    contenders: dict[str, Callable[[], tuple[float, int]]] = {
        "plain-Python limit (dict + crc32)": lambda: plain(actors),
        "signalbox flags.enabled": lambda: ours(actors),
        "signalbox flags.enabled in a request": lambda: ours_in_request(actors),
        "UnleashClient (bootstrapped)": lambda: timed(
            lambda c: unleash.is_enabled(NAME, c),  # type: ignore[arg-type]
            unleash_ctx,  # type: ignore[arg-type]
        ),
        "OpenFeature SDK, in-memory provider": lambda: pair()[0],
        "OpenFeature SDK, signalbox provider": lambda: pair()[1],
    }
    last_pair: list[tuple[tuple[float, int], tuple[float, int]]] = []

    def pair() -> tuple[tuple[float, int], tuple[float, int]]:
        """Both OpenFeature contenders run together, interleaved (see :func:`paired`)."""
        if not last_pair:
            last_pair.append(
                paired(
                    lambda c: of_memory.get_boolean_value(NAME, False, c),
                    lambda c: of_ours.get_boolean_value(NAME, False, c),
                    contexts,
                )
            )
            return last_pair[0]
        return last_pair.pop()

    sizes = {
        name: (a.n if name.startswith(("plain", "signalbox")) else a.peer_n) for name in contenders
    }
    ns: dict[str, list[float]] = {name: [] for name in contenders}
    gc.freeze()  # the setup's objects (a million actor strings) are not scanned by every GC
    load = os.getloadavg()
    print(
        f"flag evaluation: a 30% rollout over varying actors; {a.n:,} evaluations (peers "
        f"{a.peer_n:,}) x {a.rounds} rounds; load average {load[0]:.1f} {load[1]:.1f} "
        f"{load[2]:.1f} on {os.cpu_count()} cores"
    )
    for _ in range(a.rounds):
        for name, run in contenders.items():
            seconds, on = run()
            share = on / sizes[name]
            tolerance = max(0.01, 5 * (0.21 / sizes[name]) ** 0.5)  # 5 sigma of a binomial
            if abs(share - 0.30) > tolerance:
                raise SystemExit(
                    f"{name}: {share:.3%} of actors on, expected 30% +- {tolerance:.1%}"
                )
            ns[name].append(per_eval_ns(seconds, sizes[name]))
    for name, xs in ns.items():
        runs = ", ".join(f"{x:,.0f}" for x in xs)
        print(f"  {name:<40} median {statistics.median(xs):>9,.0f} ns/eval  (rounds: {runs})")

    def ratio(num: str, den: str) -> float:
        return statistics.median([n / d for n, d in zip(ns[num], ns[den], strict=True)])

    print("median of per-round ratios:")
    limit, mine = "plain-Python limit (dict + crc32)", "signalbox flags.enabled"
    print(
        f"  flags.enabled / plain-Python limit:              {ratio(mine, limit):.2f}x (target <= 2x)"
    )
    print(
        f"  flags.enabled in a request / plain-Python limit: "
        f"{ratio('signalbox flags.enabled in a request', limit):.2f}x"
    )
    print(
        f"  UnleashClient / flags.enabled:                   {ratio('UnleashClient (bootstrapped)', mine):.0f}x"
    )
    print(
        f"  OpenFeature in-memory / flags.enabled:           "
        f"{ratio('OpenFeature SDK, in-memory provider', mine):.0f}x"
    )
    added = ratio("OpenFeature SDK, signalbox provider", "OpenFeature SDK, in-memory provider") - 1
    print(f"  signalbox provider vs in-memory, same SDK:       {added:+.1%} (target <= +10%)")
    unleash.destroy()


if __name__ == "__main__":
    main()
