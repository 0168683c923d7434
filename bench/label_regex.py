"""Label regex matching: RE2 with fast paths (ours) against Python's ``re`` (what it replaced).

Issue 8 moved label matchers to RE2 so no pattern can backtrack; a call into the RE2
binding costs several times a Python ``re`` match, so the common shapes are answered
without RE2 and the rest go through a value memo. This prints, per pattern shape, the cost
of one match both ways (min of ``--repeat`` runs), then a selection over a ``--series``
catalog (two matchers per series, as ``series_matches`` runs them), then the two
pathological patterns of the issue over 30-character values (Python's ``re`` is not run
on those: it would take minutes).

Run: ``.venv/bin/python bench/label_regex.py [--series 100000] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Sequence

from signalbox.metrics.samples import Labels, Matcher, series_matches


def python_re(pattern: str, op: str = "=~") -> Callable[[str], bool]:
    """``Matcher.matches`` before issue 8: Python ``re``, anchored, DOTALL/ASCII."""
    flags = re.DOTALL | re.ASCII
    lead = re.match(r"\(\?([ims]+)\)", pattern)
    if lead:  # Python wants global flags at the very start
        for ch in lead.group(1):
            flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}[ch]
        pattern = pattern[lead.end() :]
    rx = re.compile(f"(?:{pattern})\\Z", flags)

    def matches(value: str) -> bool:
        if op == "=":
            return value == pattern
        if op == "!=":
            return value != pattern
        hit = rx.match(value) is not None
        return hit if op == "=~" else not hit

    return matches


def old_series_matches(
    name: str, labels: Labels, matchers: list[tuple[str, Callable[[str], bool]]]
) -> bool:
    """``series_matches`` before issue 8 (a dict of the labels for every series)."""
    d = dict(labels)
    for label, matches in matchers:
        v = name if label == "__name__" else d.get(label, "")
        if not matches(v):
            return False
    return True


def per_match_ns(fn: Callable[[str], bool], values: Sequence[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for v in values:
            fn(v)
        best = min(best, time.perf_counter() - t)
    return best / len(values) * 1e9


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    jobs = [f"job_{i}_{('api', 'db', 'web')[i % 3]}" for i in range(1000)]
    repeated = jobs * 100  # 100k matches over 1,000 distinct values (a `job`-like label)
    distinct = [f"host-{i}.example:9100" for i in range(100_000)]  # an `instance`-like label
    shapes = {
        ".*": ".*",
        ".+": ".+",
        "literal": "job_5_api",
        "a|b|c (10)": "|".join(re.escape(v) for v in jobs[:10]),
        "prefix.*": "job_1.*",
        ".*contains.*": ".*_api.*",
        "general": "job_[0-9]+_(api|db)",
        "(?i) general": "(?i)JOB_1[0-9]*_API",
    }
    print(f"{'pattern shape':16} {'python re':>10} {'re2+fast':>10}   (ns per match)")
    for label, pattern in shapes.items():
        ours = Matcher("job", "=~", pattern)
        before = per_match_ns(python_re(pattern), repeated, args.repeat)
        after = per_match_ns(ours.matches, repeated, args.repeat)
        kind = ours._regex.kind if ours._regex else "?"
        print(f"{label:16} {before:10.0f} {after:10.0f}   [{kind}]")
    general = "host-[0-9]+[.]example:9100"
    before = per_match_ns(python_re(general), distinct, args.repeat)
    after = per_match_ns(Matcher("instance", "=~", general).matches, distinct, args.repeat)
    print(f"{'general, unique':16} {before:10.0f} {after:10.0f}   (every value distinct)")
    miss = [f"db-{i}.example:9100" for i in range(100_000)]
    before = per_match_ns(python_re(general), miss, args.repeat)
    after = per_match_ns(Matcher("instance", "=~", general).matches, miss, args.repeat)
    print(f"{'general, miss':16} {before:10.0f} {after:10.0f}   (distinct, wrong prefix)")

    n = args.series
    catalog: list[tuple[str, Labels]] = [
        (f"metric_{i % 500}", (("instance", f"host-{i}:9100"), ("job", jobs[i % 1000])))
        for i in range(n)
    ]
    print(f"\nselection over {n:,} series (two regex matchers), ms:")
    picked = ("a|b|c (10)", "prefix.*", ".*contains.*", "general")
    cases = [("__name__", "metric_1.*", "job", shapes[k], k) for k in picked]
    cases.append(("job", ".+", "instance", "host-[0-9]*7:9100", "unique values"))
    for name_label, name_rx, label_name, pattern, label in cases:
        ms = (Matcher(name_label, "=~", name_rx), Matcher(label_name, "=~", pattern))
        olds = [(name_label, python_re(name_rx)), (label_name, python_re(pattern))]
        best_before = best_after = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            old = sum(1 for name, lb in catalog if old_series_matches(name, lb, olds))
            best_before = min(best_before, time.perf_counter() - t)
            t = time.perf_counter()
            new = sum(1 for name, lb in catalog if series_matches(name, lb, ms))
            best_after = min(best_after, time.perf_counter() - t)
        assert old == new, (label, old, new)
        print(
            f"  {label:14} python re {best_before * 1e3:7.1f}   re2+fast {best_after * 1e3:7.1f}"
            f"   ({new} series)"
        )

    print("\npathological patterns, 10,000 values of 30+ characters (RE2 only):")
    values = [f"{'a' * 30}{i}" for i in range(10_000)]
    for pattern in ("(((((((((((.*)*)*)*)*)*)*)*)*)*)*)*x", "(a+)+b"):
        m = Matcher("v", "=~", pattern)
        t = time.perf_counter()
        hits = sum(m.matches(v) for v in values)
        print(f"  {pattern:40} {(time.perf_counter() - t) * 1e3:7.1f} ms ({hits} hits)")


if __name__ == "__main__":
    main()
