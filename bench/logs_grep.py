"""Reading the access log: ``signalbox logs grep`` / ``trace`` vs GNU grep, same files.

An access log of ``--lines`` combined-format lines (notes: user_id, api_key fingerprint,
api_method; 1% 5xx), plain and rotated with gzip. Each round runs every case once, end to end
(process start included: the command as a subprocess, its output read through a pipe),
ours then the peer's, so the machine's drift hits both alike:

* ``logs grep --user U`` (a user on 0.1% of lines); peer: ``grep -F 'U ['`` (what an operator
  types: no parsing, no exact field);
* ``logs grep --status 5xx`` (1% of lines, each parsed in full); peer:
  ``grep -E '" 5[0-9]{2} '``;
* ``logs trace ID`` over the access log and an application log of as many lines (files from
  the config); peer: ``grep -F ID`` over both files;
* ``logs grep --user U`` over the gzip file; peer: ``zgrep -F``.

Our command runs as an installed one does, its bytecode cached (a warm-up run fills a
``PYTHONPYCACHEPREFIX`` in the temporary folder, whatever ``PYTHONDONTWRITEBYTECODE`` says),
so process start is Python's and the imports', not compiling our sources each time.

Prints each case's median wall seconds and CPU seconds (user + system of the child), and the
medians of per-round ratios (ours / peer's) of both; the line counts must match. The CPU
figure is steadier on a loaded machine: wall time there includes waiting for a core.

``--baseline SRC``: also runs each case with another checkout's sources (``SRC`` holds the
``signalbox`` package: ``git archive REV src | tar -x -C /tmp/base`` gives ``/tmp/base/src``)
in the same rounds, and prints the median per-round ratio of ours to it: a change's effect
measured under the same load.

``--ours SRC`` runs ours from a snapshot the same way (the tree may change meanwhile).

``--start N``: instead, the instructions (``valgrind --tool=callgrind``, deterministic, so
steady under any load) of each of our cases over logs of N lines (100: mostly process
start), bytecode cached, ours and the baseline's; ``python -c pass`` for scale.

Usage: .venv/bin/python bench/logs_grep.py [--lines 200000] [--runs 7] [--baseline SRC]
       [--ours SRC] [--start 100]
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from signalbox.instrument.accesslog import AccessRecord, format_combined

SIGNALBOX = str(Path(sys.executable).parent / "signalbox")


def write_logs(folder: Path, n: int) -> str:
    rng = random.Random(5)
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    rid_traced = ""
    with (folder / "access.log").open("w") as acc, (folder / "app.log").open("w") as app:
        for i in range(n):
            user = "needle42" if i % 1000 == 500 else f"u{rng.randint(1, 50_000)}"
            rid = os.urandom(16).hex()
            if i == n // 2:
                rid_traced = rid
            at = t0 + timedelta(milliseconds=i * 7)
            r = AccessRecord(
                at,
                host="www1",
                client="10.1.2.3",
                method=rng.choice(("GET", "GET", "POST")),
                path=f"/photos/{user}",
                protocol="HTTP/1.1",
                status=503 if rng.random() < 0.01 else 200,
                bytes=rng.randint(100, 20_000),
                duration_us=rng.randint(200, 90_000),
                request_id=rid,
                route="/photos/{user}",
                user_agent="Mozilla/5.0 (X11; Linux x86_64)",
                notes={"user_id": user, "api_key": "fp:0123456789abcdef", "api_method": "p.s"},
            )
            acc.write(format_combined(r) + "\n")
            stamp = (at + timedelta(microseconds=300)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            app.write(f"{stamp} [{rid}] INFO photos: listed photos of {user}\n")
    data = (folder / "access.log").read_bytes()
    (folder / "old.log.1.gz").write_bytes(gzip.compress(data, compresslevel=6))
    (folder / "signalbox.toml").write_text(
        '[instrument]\naccess_log = "access.log"\n[logs]\nfiles = ["app.log"]\n'
    )
    return rid_traced


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and lines printed of one run of ``cmd``."""
    cpu = _child_cpu()
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"{cmd} failed ({out.returncode}): {out.stderr[-500:]}")
    return wall, _child_cpu() - cpu, len(out.stdout.splitlines())


def instructions(cmd: list[str], cwd: Path, env: dict[str, str]) -> int:
    """Instructions callgrind counts for one run of ``cmd`` (its bytecode cached first)."""
    subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=True)
    out = cwd / "callgrind.out"
    got = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    out.unlink()
    return int(re.search(r"Collected : (\d+)", got.stderr).group(1))  # type: ignore[union-attr]


def start_counts(
    d: Path,
    cases: dict[str, tuple[list[str], list[str]]],
    env: dict[str, str],
    base_env: dict[str, str] | None,
) -> None:
    print(f"python -c pass: {instructions([sys.executable, '-c', 'pass'], d, env) / 1e6:.1f}M")
    print(f"{'case':<22}{'ours':>10}{'baseline':>10}")
    for name, (ours, _) in cases.items():
        mine = instructions(ours, d, env) / 1e6
        base = "" if base_env is None else f"{instructions(ours, d, base_env) / 1e6:.1f}M"
        print(f"{name:<22}{mine:>9.1f}M{base:>10}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--baseline", type=Path, help="another checkout's src folder")
    ap.add_argument("--ours", type=Path, help="our src folder (default: the installed one)")
    ap.add_argument("--start", type=int, metavar="N", help="callgrind counts over N lines")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rid = write_logs(d, args.start or args.lines)
        mb = (d / "access.log").stat().st_size / 1e6
        print(
            f"{args.start or args.lines} lines, access.log {mb:.1f} MB, load {os.getloadavg()[0]:.2f}"
        )
        cases = {
            "grep --user (0.1%)": (
                [SIGNALBOX, "logs", "grep", "--user", "needle42", "access.log"],
                ["grep", "-F", "needle42 [", "access.log"],
            ),
            "grep --status 5xx": (
                [SIGNALBOX, "logs", "grep", "--status", "5xx", "access.log"],
                ["grep", "-E", '" 5[0-9]{2} ', "access.log"],
            ),
            "trace ID (2 files)": (
                [SIGNALBOX, "logs", "trace", rid],
                ["grep", "-F", rid, "access.log", "app.log"],
            ),
            "grep --user, gzip": (
                [SIGNALBOX, "logs", "grep", "--user", "needle42", "old.log.1.gz"],
                ["zgrep", "-F", "needle42 [", "old.log.1.gz"],
            ),
        }
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(d / "pycache")
        if args.ours is not None:  # a snapshot: the tree may change while this runs
            env["PYTHONPATH"] = str(args.ours.resolve())
        base_env = None
        if args.baseline is not None:
            base_env = {**env, "PYTHONPATH": str(args.baseline.resolve())}
            base_env["PYTHONPYCACHEPREFIX"] = str(d / "pycache-base")
        if args.start:
            start_counts(d, cases, env, base_env)
            return
        for ours, _ in cases.values():  # warm-up: the bytecode cache, the page cache
            timed(ours, d, env)
            if base_env is not None:
                timed(ours, d, base_env)
        rows: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in cases}
        base: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
        counts: dict[str, tuple[int, int]] = {}
        for _ in range(args.runs):
            for name, (ours, peer) in cases.items():
                a, ca, na = timed(ours, d, env)
                b, cb, nb = timed(peer, d)
                rows[name].append((a, b, ca, cb))
                counts[name] = (na, nb)
                if base_env is not None:
                    c, cc, nc = timed(ours, d, base_env)
                    if nc != na:
                        raise SystemExit(f"{name}: {na} lines, the baseline {nc}")
                    base[name].append((c, cc))
        print(
            f"{'case':<22}{'ours s':>8}{'peer s':>8}{'ratio':>7}{'ours cpu':>10}{'peer cpu':>10}"
            f"{'ratio':>7}  lines (ours, peer)"
        )
        med = statistics.median
        for name, got in rows.items():
            wall = med(a / b for a, b, _, _ in got)
            cpu = med(ca / max(cb, 1e-3) for _, _, ca, cb in got)
            print(
                f"{name:<22}{med(r[0] for r in got):>8.3f}{med(r[1] for r in got):>8.3f}"
                f"{wall:>7.1f}{med(r[2] for r in got):>10.3f}{med(r[3] for r in got):>10.3f}"
                f"{cpu:>7.1f}  {counts[name]}"
            )
        if base_env is not None:
            print(f"\nagainst the baseline {args.baseline} (same rounds):")
            print(f"{'case':<22}{'base s':>8}{'ours/base':>11}{'base cpu':>10}{'ours/base':>11}")
            for name, got in rows.items():
                was = base[name]
                wall = med(r[0] / w[0] for r, w in zip(got, was, strict=True))
                cpu = med(r[2] / max(w[1], 1e-3) for r, w in zip(got, was, strict=True))
                print(
                    f"{name:<22}{med(w[0] for w in was):>8.3f}{wall:>11.2f}"
                    f"{med(w[1] for w in was):>10.3f}{cpu:>11.2f}"
                )
        print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
