"""``histogram_quantile``'s steps of one histogram, per step in Python vs over all steps at
once in numpy: ms per query, median of 21 runs (``time.perf_counter``), in process.

One histogram of 12 buckets (le 0.005 .. 10, +Inf) over 673 steps (7 days at a 15 min
step), counts as a ``rate()`` gives them: cumulative, the lowest buckets often 0. Cases:
every bucket present, and the same with the two highest finite buckets absent over the
first third (a bucket added later). The answers of both paths are checked equal to the bit.

    PYTHONPATH=src python bench/histogram_steps.py [--steps 673] [--runs 21]
"""

from __future__ import annotations

import argparse
import random
import statistics
import struct
import time
from collections.abc import Callable

from signalbox.query.histogram import _sorted_steps, _sorted_steps_loop

LES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf")]
Members = list[tuple[float, list[float | None]]]


def histogram(steps: int, gap: bool) -> Members:
    rng = random.Random(1)
    columns = []
    for _ in range(steps):
        total, col = 0.0, []
        for i in range(len(LES)):
            total += rng.choice([0.0, 0.0, rng.uniform(0, 5 * (i + 1))])
            col.append(total)
        columns.append(col)
    members: Members = [(le, [c[i] for c in columns]) for i, le in enumerate(LES)]
    if gap:
        for i in (9, 10):
            members[i][1][: steps // 3] = [None] * (steps // 3)
    return members


def ms(
    fn: Callable[[list[float], Members], object], phi: list[float], m: Members, runs: int
) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(phi, m)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=673)
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()
    phi = [0.99] * args.steps
    for name, gap in (("all present", False), ("gaps", True)):
        members = histogram(args.steps, gap)
        old, new = _sorted_steps_loop(phi, members), _sorted_steps(phi, members)
        bits = [[None if v is None else struct.pack("<d", v) for v in vs] for vs in (old, new)]
        assert bits[0] == bits[1], name
        before = ms(_sorted_steps_loop, phi, members, args.runs)
        after = ms(_sorted_steps, phi, members, args.runs)
        print(
            f"{name:12} {len(LES)} buckets x {args.steps} steps: per step {before:.3f} ms, "
            f"arrays {after:.3f} ms ({before / after:.1f}x)"
        )


if __name__ == "__main__":
    main()
