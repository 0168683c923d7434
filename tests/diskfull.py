"""Real outages of store space for tests: a full disk (SQLite) and a full tablespace (PostgreSQL).

SQLite: :func:`small_disk` mounts a small tmpfs (this needs root, as CI and the dev box run);
:meth:`SmallDisk.fill` writes a filler file until the kernel answers ENOSPC, so the disk is
full for real, and :meth:`SmallDisk.free` deletes it. Where mounting is not possible the test
skips, and fails when ``SIGNALBOX_REQUIRE_SERVICES=1`` (in CI nothing may skip).

PostgreSQL cannot be given a full disk here, but the server can fail a transaction half-way
exactly as one does: :func:`pg_disk_full` installs a trigger on the tables every write ends
with (``metric_stamps`` after the samples, ``metric_meta``, ``metric_rollups`` after a
rollup's buckets) that raises SQLSTATE 53100 (``disk_full``) while a flag row is set.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.stores import PG_BASE

REQUIRED = os.environ.get("SIGNALBOX_REQUIRE_SERVICES") == "1"


@dataclass
class SmallDisk:
    """A mounted tmpfs of ``size_kib``; the store goes in :attr:`path`."""

    path: Path
    size_kib: int

    @property
    def filler(self) -> Path:
        return self.path / "filler"

    def fill(self) -> None:
        """Take every free byte (a full disk, as the kernel sees it: writes fail with ENOSPC)."""
        chunk = b"\0" * 65536
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (65536, 4096, 512, 1):  # down to the last byte
                while True:
                    try:
                        os.write(fd, chunk[:size])
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        assert self.free_bytes() == 0

    def leave(self, nbytes: int) -> None:
        """After :meth:`fill`: give back ``nbytes`` (room to open a database, not to write a pass)."""
        size = self.filler.stat().st_size
        os.truncate(self.filler, max(0, size - nbytes))

    def free(self) -> None:
        """Space returns."""
        self.filler.unlink(missing_ok=True)

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def small_disk(where: Path, size_kib: int = 32 * 1024) -> Iterator[SmallDisk]:
    """A tmpfs of ``size_kib`` mounted on ``where`` (created) until the end; always unmounted."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except OSError as e:
        done = subprocess.CompletedProcess([], 1, "", str(e))
    if done.returncode != 0:
        why = f"cannot mount a tmpfs (needs root) for a real full disk: {done.stderr.strip()}"
        if REQUIRED:
            pytest.fail(f"{why} (required: SIGNALBOX_REQUIRE_SERVICES=1)")
        pytest.skip(why)
    try:
        yield SmallDisk(where, size_kib)
    finally:
        gone = subprocess.run(["umount", str(where)], capture_output=True, timeout=10)
        if gone.returncode != 0:  # still held (a process that outlived its test): detach it
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


@dataclass
class PgDiskFull:
    """Switch for the trigger of :func:`pg_disk_full` on one schema."""

    schema: str

    def _run(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(PG_BASE, autocommit=True) as admin:
            admin.execute(f"SET search_path = {self.schema}")
            admin.execute(sql)

    def install(self) -> None:
        """After the store's tables exist: the trigger, off."""
        self._run(
            """
            CREATE TABLE test_disk_full (full_since TIMESTAMPTZ NOT NULL DEFAULT now());
            CREATE FUNCTION test_disk_full_guard() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF EXISTS (SELECT 1 FROM test_disk_full) THEN
                RAISE EXCEPTION 'could not extend file "base/16384/24576": No space left on device'
                  USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
              END IF;
              RETURN COALESCE(NEW, OLD);  -- OLD: a delete, for guard()
            END $$;
            CREATE TRIGGER test_disk_full BEFORE INSERT OR UPDATE ON metric_stamps
              FOR EACH ROW EXECUTE FUNCTION test_disk_full_guard();
            CREATE TRIGGER test_disk_full BEFORE INSERT OR UPDATE ON metric_meta
              FOR EACH ROW EXECUTE FUNCTION test_disk_full_guard();
            CREATE TRIGGER test_disk_full BEFORE INSERT OR UPDATE ON metric_rollups
              FOR EACH ROW EXECUTE FUNCTION test_disk_full_guard();
            """
        )

    def guard(self, tables: list[str]) -> None:
        """After :meth:`install`: the same failure for any write to ``tables`` (a DELETE
        too: a packing's chunk ends by deleting the row buckets it packed)."""
        self._run(
            "".join(
                f"CREATE TRIGGER test_disk_full BEFORE INSERT OR UPDATE OR DELETE ON {t} "
                "FOR EACH ROW EXECUTE FUNCTION test_disk_full_guard();"
                for t in tables
            )
        )

    def fill(self) -> None:
        self._run("INSERT INTO test_disk_full DEFAULT VALUES")

    def free(self) -> None:
        self._run("DELETE FROM test_disk_full")


def pg_schema_of(url: str) -> str:
    """The schema a :func:`tests.stores.pg_schema_url` URL puts first on the search path."""
    options = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["options"][0]
    return options.split("search_path=", 1)[1]


def pg_disk_full(url: str) -> PgDiskFull:
    return PgDiskFull(pg_schema_of(url))
