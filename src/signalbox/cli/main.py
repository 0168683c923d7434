"""The ``signalbox`` command: parses arguments and wires library calls, nothing more.

Exit codes (SPEC): 0 ok, 1 a check failed, 2 usage or configuration error. Heavy modules
are imported inside each command so ``collect --once`` from cron starts fast; its plain
form does not even import click (:mod:`signalbox.cli.collect_once`).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing is not imported: a `logs grep` starts without it
if TYPE_CHECKING:
    from typing import Any

    from signalbox.cli.base import cli

__all__ = ["cli", "main"]


def main() -> None:
    if "logs" in sys.argv[1:]:  # a plain logs grep|trace starts without click nor logging
        from signalbox.cli.logs_run import fast_main as logs_main

        code = logs_main(sys.argv[1:])
        if code is not None:
            raise SystemExit(code)
    from signalbox.cli.collect_once import fast_main

    code = fast_main(sys.argv[1:])
    if code is not None:
        raise SystemExit(code)
    from signalbox.cli.base import cli

    cli(prog_name="signalbox")


def __getattr__(name: str) -> Any:
    if name == "cli":
        from signalbox.cli.base import cli

        return cli
    raise AttributeError(name)


if __name__ == "__main__":
    main()
