"""Command: run a program per notification, for paging tools that only have a CLI.

Config (``[notifiers.NAME]``)::

    type = "command"
    command = ["/usr/local/bin/page", "--team", "photos"]   # argv, no shell; a string is split like a shell would
    timeout = "30s"                                         # optional; the process group is killed after it

The program gets the JSON payload (see :mod:`~signalbox.monitors.notify.notification`) on
stdin and the same facts as environment variables: ``SIGNALBOX_ID``,
``SIGNALBOX_FINGERPRINT``, ``SIGNALBOX_KIND``, ``SIGNALBOX_DRILL`` (``true``/``false``),
``SIGNALBOX_MONITOR``, ``SIGNALBOX_STATE``, ``SIGNALBOX_PREVIOUS_STATE``,
``SIGNALBOX_TITLE``, ``SIGNALBOX_SUMMARY``, ``SIGNALBOX_DESCRIPTION``, ``SIGNALBOX_OWNER``,
``SIGNALBOX_RUNBOOK``, ``SIGNALBOX_VALUE``, ``SIGNALBOX_LABELS`` (JSON object),
``SIGNALBOX_STARTED_AT``, ``SIGNALBOX_ENDS_AT``, ``SIGNALBOX_CREATED_AT`` (RFC 3339),
``SIGNALBOX_SILENCED``, ``SIGNALBOX_SUPPRESSED_BY``, ``SIGNALBOX_GENERATOR_URL``.

Exit 0 is delivered. Any other outcome raises NotifyError; it is retryable (a paging CLI
usually fails because its service is unreachable) except for a program that cannot be
started, exit 126/127 (the shell's "cannot execute"/"not found") and the permanent
``sysexits.h`` codes 64-78 other than 75 (``EX_TEMPFAIL``), which will fail the same way
again.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping, Sequence

from signalbox.monitors.nagios.plugin import run_captured
from signalbox.monitors.notify.notification import (
    Notification,
    NotifyError,
    rfc3339,
    show_value,
    title,
    to_json,
)

DEFAULT_TIMEOUT_S = 30.0
EX_TEMPFAIL = 75
PERMANENT_EXIT_CODES: frozenset[int] = frozenset({*range(64, 79), 126, 127}) - {EX_TEMPFAIL}


def notification_env(n: Notification) -> dict[str, str]:
    """The ``SIGNALBOX_*`` variables for ``n`` (NUL bytes, which no environment can hold, become spaces)."""
    values = {
        "ID": n.id,
        "FINGERPRINT": n.fingerprint,
        "KIND": n.kind,
        "DRILL": "true" if n.drill else "false",
        "MONITOR": n.monitor,
        "STATE": n.state.value,
        "PREVIOUS_STATE": n.previous_state.value,
        "TITLE": title(n),
        "SUMMARY": n.summary,
        "DESCRIPTION": n.description,
        "OWNER": n.owner,
        "RUNBOOK": n.runbook,
        "VALUE": show_value(n.value),
        "LABELS": json.dumps(dict(n.labels), ensure_ascii=False),
        "STARTED_AT": rfc3339(n.started_at),
        "ENDS_AT": "" if n.ends_at is None else rfc3339(n.ends_at),
        "CREATED_AT": rfc3339(n.created_at),
        "SILENCED": "true" if n.silenced else "false",
        "SUPPRESSED_BY": n.suppressed_by,
        "GENERATOR_URL": n.generator_url,
    }
    return {f"SIGNALBOX_{k}": v.replace("\0", " ") for k, v in values.items()}


class CommandNotifier:
    """Runs ``argv`` once per notification; ``environ`` is the base environment (default: ours)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not argv:
            raise ValueError("command notifier needs a non-empty argv")
        self.name, self.argv, self.timeout_s = name, list(argv), timeout_s
        self.environ = environ

    def __repr__(self) -> str:
        return f"CommandNotifier({self.name!r}, {self.argv[0]!r})"

    def send(self, n: Notification) -> None:
        base = os.environ if self.environ is None else self.environ
        env = {**base, **notification_env(n)}
        run = run_captured(self.argv, timeout_s=self.timeout_s, env=env, stdin=to_json(n))
        program = self.argv[0]
        if run.start_error is not None:
            why = run.start_error.strerror or str(run.start_error)
            raise NotifyError(self.name, f"cannot run {program!r}: {why}", False)
        if run.timed_out:
            raise NotifyError(
                self.name,
                f"{program!r} timed out after {self.timeout_s:g}s; killed its process group",
                True,
            )
        code = run.exit_code
        if code == 0:
            return
        stderr = " | ".join(
            line.strip()
            for line in run.stderr.decode("utf-8", "replace").splitlines()
            if line.strip()
        )
        detail = f"; stderr: {stderr[-500:]}" if stderr else ""
        if code is not None and code < 0:
            raise NotifyError(
                self.name, f"{program!r} was killed by signal {_signal_name(-code)}{detail}", True
            )
        permanent = code in PERMANENT_EXIT_CODES
        raise NotifyError(self.name, f"{program!r} exited with {code}{detail}", not permanent)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
