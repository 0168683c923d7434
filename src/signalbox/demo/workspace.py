"""The folder ``serve --demo`` runs in: a real config file, its monitors, no leftovers.

The demo runs from a real ``signalbox.toml``, so ``signalbox monitors status``, ``drill``,
``lint`` and ``query`` in the same folder see the demo's monitors and its ``demo_log``
notifier (settings made up in memory would be invisible to them):

- no config in effect (no ``--config``, no ``$SIGNALBOX_CONFIG``, no ``./signalbox.toml``):
  the demo writes ``./signalbox.toml``, its first line marking it as the demo's;
- a config carrying that mark: the demo runs from it as it is (never rewritten);
- the user's own config: left alone, and so are its store and spool. The demo runs apart,
  from ``DATA_DIR/demo/signalbox.toml`` with its own store and spool, and says which
  ``--config`` to pass.

A previous run's spool file stays behind when that run was killed (SIGKILL, power loss);
its old values would fight the live ones and its age would page. Such files are removed at
start, identified by name, the header the client writes and content (only the demo's
metrics), and only when the process that wrote them is gone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from signalbox.config import CONFIG_NAME
from signalbox.exceptions import UsageError

MARKER = "# Written by `signalbox serve --demo`"
CLIENT_PROG = "demo-photos"
MONITOR_FILE = "demo.yaml"
DEMO_METRICS = frozenset(
    {
        "image_processed_total",
        "image_processing_time",
        "photo_queue_depth",
        "demo_db_threads_running",
        "signalbox_client_errors_total",
        # the demo's photo site (signalbox.demo.webapp), through the middleware
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_count",
        "http_request_duration_seconds_sum",
    }
)
_SPOOL_FILE = re.compile(rf"{CLIENT_PROG}-(\d+)\.metrics\Z")
_METRIC_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")

DEMO_MONITORS = """\
# Written by `signalbox serve --demo` (rewritten at each start): monitors over the simulated photo service.
- name: demo_image_processing_slow
  description: (demo) Resizes are slower than users tolerate; uploads back up behind them.
  owner: photos
  runbook: https://wiki.example/runbooks/resize
  query: avg_over_time(image_processing_time[1m])
  warning: "> 4"
  critical: "> 8"
  for: 30s
  recover: "< 3"
  notify: [demo_log]
- name: demo_resize_queue_high
  description: (demo) Photos are piling up waiting to be resized.
  owner: photos
  query: max(photo_queue_depth)
  warning: "> 200"
  critical: "> 400"
  notify: [demo_log]
- name: demo_db_overloaded
  description: (demo) The photo database is overloaded; reprocessing is switched off to spare it. Once this recovers, turn it back on (signalbox flags set demo_reprocessing on --reason "...", or the Flags page).
  owner: photos
  query: max(demo_db_threads_running)
  critical: "> 50"
  for: 20s
  recover: "< 30"
  notify: [demo_log]
  on_critical: {flag: demo_reprocessing, set: "off"}
- name: demo_photo_app_alive
  description: (demo) The photo app rewrites its spool file every few seconds; a stale file means it died.
  owner: photos
  stale: {spool_file: "demo-photos-*.metrics", after: 1m}
  notify: [demo_log]
"""


FLAG_FILE = "demo.yaml"
DEMO_FLAGS = """\
# Written by `signalbox serve --demo` (rewritten at each start): the demo's feature flags.
- name: demo_reprocessing
  description: (demo) Reprocess old albums in the background; off holds the jobs (deferred, not failed). demo_db_overloaded switches it off; an operator switches it back on.
  owner: photos
  default: true
"""


def config_text(
    *, data_dir: str, monitors_dir: str, config_option: str, flags_dir: str = "flags"
) -> str:
    """The demo's ``signalbox.toml``: collection and evaluation fast enough to watch, its
    monitors, and the log notifier they name. ``config_option`` is what a command must be
    given to find this file (empty when it lies in the folder the commands run in)."""
    c = config_option
    return f"""\
{MARKER} (a simulated photo service).
# Commands given this config see what the demo runs, e.g.:
#   signalbox {c}monitors status
#   signalbox {c}monitors drill demo_image_processing_slow
#   signalbox {c}query 'avg_over_time(image_processing_time[5m])' --since 1h
#   signalbox {c}flags set demo_reprocessing on --reason "db load is back to normal"
# While the first line stays, `serve --demo` runs from this file as it is; delete that line
# and the file is yours. `signalbox init` writes a config with every setting explained.
data_dir = "{data_dir}"

[collect]
interval = "5s"

[monitors]
paths = ["{monitors_dir}"]
interval = "10s"

[notifiers.demo_log]
type = "log"

[flags]
paths = ["{flags_dir}"]
"""


def is_demo_config(path: Path) -> bool:
    """Whether ``path`` is a config the demo wrote (its first line is the mark)."""
    try:
        with path.open(encoding="utf-8") as f:
            return f.readline().startswith(MARKER)
    except (OSError, UnicodeDecodeError):
        return False


@dataclass(frozen=True)
class Workspace:
    """The config file the demo runs from, and how it came to be that one."""

    config: Path
    created: bool  # written by this run
    apart_from: Path | None = None  # the user's own config, which the demo left alone

    def notes(self, cwd: Path) -> list[str]:
        """What to tell the user: which config the demo runs from, how to reach it."""
        shown = _shown(self.config, cwd)
        if self.apart_from is not None:
            return [
                f"demo: {_shown(self.apart_from, cwd)} is yours, so the demo leaves it and its "
                f"store alone and runs from {shown} (its own store and spool)",
                f"demo: from another shell here: signalbox --config {shown} monitors status",
            ]
        if self.created:
            return [
                f"demo: wrote {shown} (there was no config here), so commands run in this "
                "folder see the demo: signalbox monitors status",
            ]
        return [f"demo: running from {shown}, written by an earlier `serve --demo`"]


def prepare_config(found: Path | None, cwd: Path, user_data_dir: Path | None) -> Workspace:
    """Choose, and write if missing, the config the demo runs from.

    ``found`` is the config in effect (``--config``, ``$SIGNALBOX_CONFIG`` or
    ``./signalbox.toml``), ``user_data_dir`` its ``data_dir`` (where the demo's own folder
    goes when ``found`` is the user's).
    """
    if found is not None and is_demo_config(found):
        return Workspace(found, created=False)
    if found is None:
        path = cwd / CONFIG_NAME
        text = config_text(
            data_dir=".signalbox",
            monitors_dir=".signalbox/demo/monitors",
            config_option="",
            flags_dir=".signalbox/demo/flags",
        )
        return Workspace(path, created=_write_new(path, text))
    base = (user_data_dir or found.parent / ".signalbox") / "demo"
    path = base / CONFIG_NAME
    if path.exists() and not is_demo_config(path):
        raise UsageError(
            f"{path} exists and was not written by `serve --demo`: the demo will not use or "
            "overwrite it (move it away, or run the demo in another folder)"
        )
    text = config_text(
        data_dir=".", monitors_dir="monitors", config_option=f"--config {_shown(path, cwd)} "
    )
    return Workspace(path, created=_write_new(path, text), apart_from=found)


def write_monitors(monitor_paths: Sequence[Path], config: Path) -> Path:
    """Write the demo's monitors into the ``demo/monitors`` folder its config names.

    Refused (never written into a user's monitors folder) when the config names none.
    """
    for folder in monitor_paths:
        if folder.name == "monitors" and folder.parent.name == "demo":
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / MONITOR_FILE
            target.write_text(DEMO_MONITORS, encoding="utf-8")
            return target
    raise UsageError(
        f"{config}: monitors.paths names no demo/monitors folder for the demo's monitors "
        f"(delete {config} and the demo writes a fresh one)"
    )


def write_flags(flag_paths: Sequence[Path]) -> Path | None:
    """Write the demo's flags into the ``demo/flags`` folder its config names; None (nothing
    written, never into a user's flags folder) for a config of an earlier demo that names
    none: its monitor's action is then refused, visibly, until the config is written anew."""
    for folder in flag_paths:
        if folder.name == "flags" and folder.parent.name == "demo":
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / FLAG_FILE
            target.write_text(DEMO_FLAGS, encoding="utf-8")
            return target
    return None


def _write_new(path: Path, text: str) -> bool:
    """Write ``path`` unless it exists (atomically: a reader never sees half a config)."""
    if path.exists():
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        raise UsageError(
            f"the demo cannot write its config {path}: {e.strerror or e} "
            "(run it in a folder you can write to)"
        ) from None
    return True


def _shown(path: Path, cwd: Path) -> str:
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (a signal 0 probes without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def leftovers(spool_dir: Path, alive: Callable[[int], bool] = process_alive) -> list[Path]:
    """Spool files that an earlier demo run wrote and left behind.

    A file counts only when all of these hold: its name is ``demo-photos-<pid>.metrics``,
    its first line is the client's header for that program and pid, every value in it is
    one of the demo's metrics, and no process ``<pid>`` is running (nor is it this one).
    """
    found: list[Path] = []
    try:
        entries = sorted(spool_dir.iterdir())
    except OSError:
        return found
    for path in entries:
        m = _SPOOL_FILE.match(path.name)
        if m is None or path.is_symlink() or not path.is_file():
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or alive(pid):
            continue
        if _written_by_demo(path, pid):
            found.append(path)
    return found


def _written_by_demo(path: Path, pid: int) -> bool:
    try:
        if path.stat().st_size > 64 * 1024:
            return False  # the demo's file is a few lines
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    if not lines or lines[0].strip() != f"# signalbox client: prog={CLIENT_PROG} pid={pid}":
        return False
    for line in lines[1:]:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name = _METRIC_NAME.match(text)
        if name is None or name.group(0) not in DEMO_METRICS:
            return False
    return True


def remove_leftovers(spool_dir: Path, alive: Callable[[int], bool] = process_alive) -> list[Path]:
    """Remove :func:`leftovers`; return what was removed."""
    removed = []
    for path in leftovers(spool_dir, alive):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed
