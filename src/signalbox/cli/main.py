"""The ``signalbox`` command: parses arguments and wires library calls, nothing more.

Exit codes (SPEC): 0 ok, 1 a check failed, 2 usage or configuration error. Heavy modules
are imported inside each command so ``collect --once`` from cron starts fast.
"""

from __future__ import annotations

from signalbox.cli.base import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="signalbox")


if __name__ == "__main__":
    main()
