"""A private MariaDB master-master pair for tests: two ``mariadbd`` on free ports, each the
other's replica (GTID, ``slave_pos``), torn down always.

Built for speed on a small CI box: ``mariadb-install-db`` runs once and the data dir is
copied for the second server; both start with a tiny buffer pool and redo log, no
doublewrite, no performance schema and no fsync per commit (``innodb_flush_log_at_trx_commit
= 2`` still survives the SIGKILL the tests deliver: only an OS crash loses the last second).
Servers start with ``--skip-slave-start``, so a restarted server replicates again only after
``START SLAVE``, the repair step an operator takes.

Usage (see ``tests/gates/conftest.py``)::

    with MariaDBPair.started(base_dir) as pair:
        a, b = pair.servers
        a.execute("STOP SLAVE")
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from tests.ports import free_port as free_port  # re-exported for the tests here

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"

REPL_USER = "repl"
REPL_PASSWORD = "repl-pw-Zq81"  # the tests check this never shows up in a gate's output

_SMALL = [
    "--innodb-buffer-pool-size=8M",
    "--innodb-log-file-size=4M",
    "--innodb-doublewrite=0",
]


def _as_root() -> list[str]:
    return ["--user=root"] if os.geteuid() == 0 else []


@dataclass
class Server:
    """One ``mariadbd`` of the pair."""

    server_id: int
    base: Path
    port: int
    peer_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started_s: list[float] = field(default_factory=list)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def root_dsn(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/"

    @property
    def monitor_dsn(self) -> str:
        """The replication user's DSN, with a password (gates must never show it)."""
        return f"mysql://{REPL_USER}:{REPL_PASSWORD}@127.0.0.1:{self.port}/"

    @property
    def label(self) -> str:
        return f"127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        b = self.base
        return [
            MARIADBD,
            "--no-defaults",
            *_as_root(),
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={b / 'sock'}",
            f"--pid-file={b / 'mariadbd.pid'}",
            f"--log-error={b / 'error.log'}",
            f"--server-id={self.server_id}",
            f"--gtid-domain-id={self.server_id}",
            "--log-bin=binlog",
            "--log-slave-updates=0",
            "--binlog-format=ROW",
            "--auto-increment-increment=2",
            f"--auto-increment-offset={self.server_id}",
            "--skip-name-resolve",
            "--skip-slave-start",
            "--performance-schema=0",
            "--innodb-flush-log-at-trx-commit=2",
            "--sync-binlog=0",
            "--slave-net-timeout=5",
            *_SMALL,
        ]

    def start(self, timeout_s: float = 30.0) -> None:
        """Start (or restart) and wait until it answers queries."""
        t0 = time.perf_counter()
        log = open(self.base / "stdout.log", "ab")  # noqa: SIM115 - held by the child
        self.proc = subprocess.Popen(
            self.args(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mariadbd {self.label} exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                self.connect().close()
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mariadbd {self.label} did not answer in {timeout_s} s:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.05)
        self.started_s.append(time.perf_counter() - t0)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        """Clean shutdown (SIGTERM), SIGKILL if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for name in ("error.log", "stdout.log"):
            with suppress(OSError):
                out += (self.base / name).read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)

    def connect(self) -> Any:
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            connect_timeout=2,
            read_timeout=10,
            autocommit=True,
            cursorclass=pymysql.cursors.DictCursor,
        )

    def execute(self, *statements: str) -> list[dict[str, Any]]:
        """Run ``statements`` on one connection; the last one's rows."""
        conn = self.connect()
        try:
            rows: list[dict[str, Any]] = []
            with conn.cursor() as cur:
                for s in statements:
                    cur.execute(s)
                    rows = list(cur.fetchall())
            return rows
        finally:
            conn.close()

    def replica_status(self) -> dict[str, Any]:
        rows = self.execute("SHOW SLAVE STATUS")
        return rows[0] if rows else {}

    def replicating(self) -> bool:
        s = self.replica_status()
        return s.get("Slave_IO_Running") == "Yes" and s.get("Slave_SQL_Running") == "Yes"

    def wait_replicating(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.replicating():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label} not replicating: {self.replica_status()}")
            time.sleep(0.05)


@dataclass
class MariaDBPair:
    """Two servers, each replicating the other."""

    servers: tuple[Server, Server]
    base: Path
    install_s: float = 0.0
    setup_s: float = 0.0

    @classmethod
    @contextmanager
    def started(cls, base: Path | None = None) -> Iterator[MariaDBPair]:
        """Install, start, cross-configure; stop both and delete everything afterwards."""
        # Short path: the server's unix socket path must fit in 108 bytes.
        root = Path(tempfile.mkdtemp(prefix="sbx-mdb-", dir=base))
        a = Server(1, root / "a", free_port())
        b = Server(2, root / "b", free_port())
        a.peer_port, b.peer_port = b.port, a.port
        pair = cls((a, b), root)
        try:
            t0 = time.perf_counter()
            pair._install()
            pair.install_s = time.perf_counter() - t0
            for s in pair.servers:
                s.start()
            for s in pair.servers:
                s.execute(
                    "SET sql_log_bin = 0",
                    f"CREATE USER '{REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{REPL_PASSWORD}'",
                    f"GRANT REPLICATION SLAVE, SLAVE MONITOR ON *.* TO '{REPL_USER}'@'127.0.0.1'",
                )
            for s in pair.servers:
                s.execute(
                    f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {s.peer_port}, "
                    f"MASTER_USER = '{REPL_USER}', MASTER_PASSWORD = '{REPL_PASSWORD}', "
                    "MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1",
                    "START SLAVE",
                )
            for s in pair.servers:
                s.wait_replicating()
            pair.setup_s = time.perf_counter() - t0
            yield pair
        finally:
            for s in pair.servers:
                s.stop()
            shutil.rmtree(root, ignore_errors=True)

    def _install(self) -> None:
        template = self.base / "template"
        cmd = [
            INSTALL_DB,
            "--no-defaults",
            *_as_root(),
            f"--datadir={template}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            *_SMALL,
        ]
        r = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
        if r.returncode != 0:
            out = (r.stdout + r.stderr).decode(errors="replace")[-3000:]
            raise RuntimeError(f"mariadb-install-db failed ({r.returncode}):\n{out}")
        for s in self.servers:
            s.base.mkdir(parents=True)
            shutil.copytree(template, s.datadir, symlinks=True)
        shutil.rmtree(template)

    def repair(self, server: Server) -> None:
        """Bring ``server`` back: start it if it is down, ``START SLAVE`` on both sides."""
        if not server.running:
            server.start()
        for s in self.servers:
            s.execute("START SLAVE")
        for s in self.servers:
            s.wait_replicating()

    def wait_row(self, server: Server, sql: str, timeout_s: float = 15.0) -> list[dict[str, Any]]:
        """Poll ``sql`` on ``server`` until it returns rows (replication carried them over)."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = server.execute(sql)
            if rows:
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"{sql!r} returned nothing on {server.label} in {timeout_s} s")
            time.sleep(0.05)
