"""Run the real ``signalbox`` executable of this environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

SIGNALBOX = str(Path(sys.executable).parent / "signalbox")


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALBOX_")}
    e.update(env or {})
    return subprocess.run(
        [SIGNALBOX, *args], cwd=cwd, env=e, input=input, capture_output=True, text=True, timeout=120
    )


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
