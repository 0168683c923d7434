"""Series identities of the SQL metric store: which id a (name, labels) pair has.

The ``series`` table holds id, metric name and canonical label text
(:mod:`signalbox.metrics.labelcodec`); samples refer to series by id only. Series are never
deleted, but ids do not become visible in id order: on PostgreSQL a writer may commit id
k+1 while another still holds k in an open transaction (and rolled-back or conflicting
inserts leave gaps for good). So both caches here are *subsets* of the table, topped up by
``id > newest seen`` for speed and, for whatever that misses, by looking the series up:

- the read side maps id -> (name, label text), with labels decoded on first use and an
  index by metric name, so a query for one metric loads only that metric's series; an id
  it does not know is read by id;
- the write side maps ``name{labels`` (the text the write path builds without decoding
  anything) -> id. On SQLite it is loaded from a snapshot kept in the database; the keys it
  does not know are inserted in batches (one statement per 20,000, see
  :meth:`SeriesIndex._create`) and those another writer created meanwhile read by key. On
  PostgreSQL, where many hosts' writers share one table, no writer loads the whole map (a
  snapshot of every host's series, rewritten by each): it starts empty, and the keys a
  write does not know are looked up by key and the missing ones copied in
  (:meth:`SeriesIndex._find_or_create_pg`). What a write transaction learns is kept only
  once it commits (:meth:`SeriesIndex.commit`), so a rollback never leaves an id in memory
  that the database does not have.

A first pass of a million new series (``collect --once`` on a new spool) is the case this
is shaped for (:meth:`SeriesIndex._create_all`): on SQLite the ids are given in order from
the newest, so nothing is read back; the keys are built from the label sets (or the
spool files' columns, see :class:`WriteKeys`) a batch at a time, inserted and encoded into
the snapshot, none kept past its batch; the store gets the ids as a ``range``, and the
write map is not kept (the snapshot holds it for whoever needs it: the next passes, of
frames, do not). Into a table no bigger than what it adds, the rows
go in without the unique key, which is built again after them in one sort
(:meth:`SeriesIndex._create_unindexed`).
"""

from __future__ import annotations

import logging
import operator
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from itertools import chain, compress
from typing import Any, cast

from signalbox.clock import Clock
from signalbox.exceptions import StoreError
from signalbox.metrics.labelcodec import column_keys, decode_labels, encode_labels, series_keys
from signalbox.metrics.samples import Labels, Matcher, SeriesColumns, series_matches
from signalbox.storage.database import Database
from signalbox.storage.failures import translate

log = logging.getLogger("signalbox.metrics")

_KEY = "name || '{' || labels"  # the write map's key, built in SQL
_BY_KEY_CHUNK = 400  # (name, labels) pairs per lookup: 800 parameters
_BY_ID_CHUNK = 500
_SNAPSHOT_STALE = 1000  # series learned since the snapshot was saved that make it worth rewriting
_BY_NAME_MAX_KEYS = 50_000  # a write of at most this many keys may look them up by name
_SNAPSHOT_STREAM_MIN = 1 << 20  # snapshot bytes past which SQLite gets them in pieces
_CREATE_CHUNK = 20_000  # new series per INSERT (one JSON or array parameter each)
SERIES_KEY_INDEX = "CREATE UNIQUE INDEX series_key ON series (name, labels)"
"""The unique key of the series table (its migration; dropped and built again by a first
pass into a table no bigger than what it adds, see :meth:`SeriesIndex._create_unindexed`)."""
_UNINDEXED_MIN = 10_000  # new series from which a first pass builds the key after its rows
_UNQUOTED = "\x7f"  # stands for '"' in the JSON of keys (see _sqlite_keys)
# the rows built from a JSON array of keys (a name never holds "{"); "WHERE true" lets SQLite
# read ON CONFLICT as the upsert's, not the join's
_SQLITE_ROWS = (
    "INSERT INTO series (id, name, labels, created_ms) SELECT ? + key, "
    "substr(value, 1, instr(value, '{{') - 1), {labels}, ? FROM json_each(?)"
)
_LABELS = "substr(value, instr(value, '{') + 1)"
_LABELS_REQUOTED = f"replace({_LABELS}, char({ord(_UNQUOTED)}), '\"')"
_UPSERT = " WHERE true ON CONFLICT (name, labels) DO NOTHING"
_CREATE_SQLITE = {  # (keys as written, unindexed table) -> statement
    (quoted, plain): _SQLITE_ROWS.format(labels=_LABELS if quoted else _LABELS_REQUOTED)
    + ("" if plain else _UPSERT)
    for quoted in (True, False)
    for plain in (True, False)
}
# PostgreSQL: a key's name and label text, split in SQL (a name never holds "{")
_PG_NAME = "split_part(t.k, '{', 1)"
_PG_LABELS = "substr(t.k, strpos(t.k, '{') + 1)"
_CREATE_POSTGRES = (
    "INSERT INTO series (id, name, labels, created_ms) "
    f"SELECT t.i, {_PG_NAME}, {_PG_LABELS}, ? FROM unnest(?::bigint[], ?::text[]) AS t(i, k) "
    "ON CONFLICT (name, labels) DO NOTHING"
)
_LOOKUP_POSTGRES = (
    "SELECT t.o, s.id FROM unnest(?::text[]) WITH ORDINALITY AS t(k, o) "
    f"JOIN series AS s ON s.name = {_PG_NAME} AND s.labels = {_PG_LABELS}"
)
_PG_CHUNK = 50_000  # keys per statement (one text array, ~2 MB)
_WARM_WAIT_MIN = 10_000  # series of one name a query waits for a warm-up's read to bring
_ID, _NAME, _TEXT = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)


def _is_none(v: object) -> bool:
    return v is None


def _json_array(strings: list[str]) -> str:
    import msgspec

    return msgspec.json.encode(strings).decode()


def _sqlite_keys(keys: list[str]) -> tuple[str, bool]:
    """The JSON array of ``keys`` for :data:`_CREATE_SQLITE`, and whether its quotes are
    written as such. Label texts are full of quotes, which JSON escapes, and SQLite copies
    an escaped string through a slow path each time a row reads it (~1 s a million keys):
    so each escaped quote is written as :data:`_UNQUOTED` instead, and the insert puts the
    quotes back, unless a key holds that character or a backslash (whose escape could end
    just before a quote)."""
    text = _json_array(keys)
    if "\\\\" in text or _UNQUOTED in text:
        return text, True
    return text.replace('\\"', _UNQUOTED), False


Run = tuple[list[str], int]
"""Keys created with consecutive ids from the second item (a batch nothing was read back
for)."""


class WriteKeys:
    """The keys (``name{labels``, see :func:`~signalbox.metrics.labelcodec.series_keys`) of
    a write's series, in order: its samples' (``names`` x ``label_sets``), then each of
    ``columns`` (the new layouts of spool files, column-wise) in turn; ``add`` merged into
    each. Built a slice at a time on demand, so a first pass of a million new series
    holds only a batch of keys at once."""

    def __init__(
        self,
        names: list[str],
        label_sets: list[Labels],
        add: Labels,
        columns: Sequence[SeriesColumns] = (),
    ) -> None:
        self.names, self.label_sets, self.add, self.columns = names, label_sets, add, columns
        self.bounds = [len(names)]  # where each part ends: the samples, then each of columns
        for c in columns:
            self.bounds.append(self.bounds[-1] + len(c.names))

    def __len__(self) -> int:
        return self.bounds[-1]

    def metric_names(self) -> set[str]:
        out = set(self.names)
        for c in self.columns:
            out.update(c.names)
        return out

    def slice(self, lo: int, hi: int) -> list[str]:
        """The keys of series ``lo`` to ``hi`` (exclusive)."""
        hi = min(hi, len(self))
        n = len(self.names)
        out = series_keys(self.names[lo:hi], self.label_sets[lo:hi], self.add) if lo < n else []
        k = bisect_right(self.bounds, lo)  # the first part ending after lo: columns[k - 1]
        start = self.bounds[k - 1] if k else n
        for c, end in zip(self.columns[max(k - 1, 0) :], self.bounds[max(k, 1) :], strict=True):
            a, b = max(lo, start) - start, min(hi, end) - start
            if a < b:
                whole = a == 0 and b == len(c.names)
                out.extend(
                    column_keys(c.names, c.label_names, c.label_values, self.add)
                    if whole
                    else column_keys(
                        c.names[a:b], c.label_names, [v[a:b] for v in c.label_values], self.add
                    )
                )
            start = end
            if start >= hi:
                break
        return out

    def all(self) -> list[str]:
        return self.slice(0, len(self))


class _Pending:
    """What one write transaction learned, kept apart until it commits."""

    __slots__ = ("forget_map", "ids", "ids_max", "unsaved")

    def __init__(self, ids_max: int, unsaved: int) -> None:
        self.ids: dict[str, int] = {}
        self.ids_max = ids_max
        self.unsaved = unsaved
        self.forget_map = False  # at commit: drop the write map (the snapshot holds it)


def _msgpack_pairs(out: bytearray, keys: Iterable[str], ids: Iterable[int]) -> int:
    """Append ``keys`` and their ``ids`` to ``out`` as pairs of a msgpack map (without the
    map's header); return how many: msgpack writes a map's pairs as it writes an array of
    its keys and values taken in turn, so they are encoded as such an array, whose header
    is cut off."""
    import msgspec

    flat = list(chain.from_iterable(zip(keys, ids, strict=True)))
    items = len(flat)
    out += memoryview(msgspec.msgpack.encode(flat))[
        1 if items < 16 else 3 if items < 65536 else 5 :
    ]
    return items // 2


_MAP_HEAD = 5  # bytes kept free at the start of a map's body for its header (map32's size)


def _msgpack_map(body: bytearray, n: int) -> bytearray:
    """The msgpack map ``{key: id}`` of ``n`` pairs appended by :func:`_msgpack_pairs` (no
    key twice) after :data:`_MAP_HEAD` free bytes, as ``msgpack.encode(dict)`` would write
    it, without the dict; a big one in place (a million series' map is ~45 MB)."""
    if n >= 65536:
        body[:_MAP_HEAD] = b"\xdf" + n.to_bytes(4, "big")
        return body
    head = bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
    return bytearray(head) + memoryview(body)[_MAP_HEAD:]


DECODED_MAX = 200_000
"""Decoded label sets kept per store (the label text of every known series is kept anyway)."""


class SeriesIndex:
    """The series of one database, cached in memory for the store that owns it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.rows: dict[int, tuple[str, str]] = {}  # id -> (name, label text)
        self._by_name: dict[str, list[int]] = defaultdict(list)
        self._decoded: dict[int, Labels] = {}
        self._max_id = 0  # newest id in ``rows``
        self._ids: dict[str, int] | None = None  # write path: "name{labels" -> id
        self._ids_max = 0  # newest id the write map was topped up to
        self._unsaved = 0  # entries of the write map the saved snapshot lacks
        self._pending: _Pending | None = None
        self._warm: Future[list[tuple[Any, ...]]] | None = None  # see begin_warm

    # -- reads ----------------------------------------------------------------------------
    def _add_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Know these ``(id, name, label text)`` rows (those known already are skipped),
        column by column in C: a million rows are a first query's whole index."""
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return
        known = self.rows
        ids = list(map(_ID, rows))
        if known:
            fresh = list(map(operator.not_, map(known.__contains__, ids)))
            if not all(fresh):
                rows, ids = list(compress(rows, fresh)), list(compress(ids, fresh))
                if not rows:
                    return
        shared: dict[str, str] = {}  # one str per name (the driver makes one a row)
        names = list(map(shared.setdefault, map(_NAME, rows), map(_NAME, rows)))
        known.update(zip(ids, zip(names, map(_TEXT, rows), strict=True), strict=True))
        by_name = self._by_name
        if len(shared) == 1:
            by_name[names[0]].extend(ids)
        else:
            for sid, name in zip(ids, names, strict=True):
                by_name[name].append(sid)
        self._max_id = max(self._max_id, max(ids))

    # -- warm-up (serve loads the index at start, see SQLMetricStore.warm_up) -------------
    def begin_warm(self) -> Future[list[tuple[Any, ...]]]:
        """Say a warm-up's read of every series is on its way (under the store's lock):
        until it is taken, a query that would read many series waits for it instead (the
        read needs no lock, so the wait ends)."""
        self._warm = Future()
        return self._warm

    def fill_warm(self, fut: Future[list[tuple[Any, ...]]]) -> None:
        """Read every series for ``fut`` (the warm-up's thread, without the store's lock).
        A failure is handed to ``fut`` and raised."""
        try:
            rows = self.db.query("SELECT id, name, labels FROM series")
        except BaseException as e:
            fut.set_exception(e)
            raise
        fut.set_result(rows)

    def take_warm(self, *, wait: bool) -> None:
        """Under the store's lock: know the warm-up's rows, waiting for them with
        ``wait`` (else only if read already); a failed warm-up is dropped (its thread
        logged it: the reads go on as without one)."""
        fut = self._warm
        if fut is None or (not wait and not fut.done()):
            return
        try:
            rows = fut.result()
        except Exception:
            self._warm = None
            return
        self._warm = None
        self._add_rows(rows)

    def refresh(self) -> None:
        """Know every series: those created since the last refresh, and any committed out
        of id order meanwhile (found by counting: ids are never reused nor deleted)."""
        self._add_rows(
            self.db.query(
                "SELECT id, name, labels FROM series WHERE id > ? ORDER BY id", (self._max_id,)
            )
        )
        if len(self.rows) == self._max_id:  # ids 1..max all known: no gap to fill
            return
        (count,) = self.db.query("SELECT count(*) FROM series")[0]
        if count > len(self.rows):
            known = self.rows
            self._add_rows(
                r
                for r in self.db.query(
                    "SELECT id, name, labels FROM series WHERE id <= ?", (self._max_id,)
                )
                if r[0] not in known
            )

    def orphans(self, sids: Iterable[int]) -> set[int]:
        """Of ``sids`` (read from sample tables), those that name no series; ids not known
        yet are read by id first. Orphans (only a broken database has them) are logged."""
        missing = sorted(set(sids).difference(self.rows))
        for i in range(0, len(missing), _BY_ID_CHUNK):
            chunk = missing[i : i + _BY_ID_CHUNK]
            self._add_rows(
                self.db.query(
                    f"SELECT id, name, labels FROM series WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            )
        orphans = {sid for sid in missing if sid not in self.rows}
        if orphans:
            log.warning(
                "%s: samples of series ids %s, which the series table does not have, are left out",
                self.db.url,
                sorted(orphans)[:20],
            )
        return orphans

    def labels(self, sid: int) -> Labels:
        got = self._decoded.get(sid)
        if got is None:
            if len(self._decoded) >= DECODED_MAX:
                # bounded: a long serve that read a million series once would keep ~300 MB
                # of label tuples; decoding one again costs ~1.5 µs
                self._decoded.clear()
            got = self._decoded[sid] = decode_labels(self.rows[sid][1])
        return got

    def matching_ids(self, matchers: Sequence[Matcher]) -> list[int]:
        names = [m.value for m in matchers if m.label == "__name__" and m.op == "="]
        if names:
            # one metric name: ask the index instead of loading every series, and only read
            # the rows when another process added some (a count is one row; the rows of a
            # metric of 2,000 series are 2,000 steps, each giving up the GIL, which under
            # load costs a switch interval each: seconds)
            name = names[0]
            (count,) = self.db.query("SELECT count(*) FROM series WHERE name = ?", (name,))[0]
            missing = count - len(self._by_name.get(name, ()))
            if missing and self._warm is not None:  # many: wait for the warm-up's read
                self.take_warm(wait=missing >= _WARM_WAIT_MIN)
            if count != len(self._by_name.get(name, ())):
                self._add_rows(
                    self.db.query("SELECT id, name, labels FROM series WHERE name = ?", (name,))
                )
            candidates: Iterable[int] = list(self._by_name.get(name, ()))
        else:
            self.refresh()
            candidates = list(self.rows.keys())
        ms = list(matchers)
        if names and all(m.label == "__name__" and m.op == "=" for m in ms):
            # the name alone (sum(x) over a million series): every candidate matches, or none
            return list(candidates) if all(m.value == names[0] for m in ms) else []
        rows = self.rows
        for m in ms:
            if m.op == "=" and m.value and m.label != "__name__":
                # a series with label="v" has that pair, as written, in its label text: a
                # substring test (C speed) leaves the few to decode and match exactly
                pair = encode_labels(((m.label, m.value),))
                candidates = [sid for sid in candidates if pair in rows[sid][1]]
        return [sid for sid in candidates if series_matches(rows[sid][0], self.labels(sid), ms)]

    # -- writes ---------------------------------------------------------------------------
    def _series_ids(self) -> dict[str, int]:
        """``name{labels`` -> id for the series known so far, loaded once per store object.

        ``collect --once`` is a new process every pass, so the map is kept in the database
        as one msgpack blob with the newest id it was topped up to, and topped up with the
        series created after that id. It is a subset, never a claim of completeness: a
        series another writer committed out of id order is missing from it, and is found
        by key when a write needs it (then saved with the next snapshot). Living in the
        same database, it is backed up and restored with the data it maps.
        """
        if self._ids is None and self.db.dialect.name != "sqlite":
            self._ids = {}  # PostgreSQL: what this store learned, a write's keys looked up
            return self._ids
        if self._ids is None:
            import msgspec

            rows = self.db.query("SELECT max_id, data FROM series_ids_snapshot WHERE id = 1")
            if rows:
                self._ids = msgspec.msgpack.decode(bytes(rows[0][1]), type=dict[str, int])
                self._ids_max = int(rows[0][0])
                for key, sid in self.db.query(
                    f"SELECT {_KEY}, id FROM series WHERE id > ?", (self._ids_max,)
                ):
                    self._ids[key] = sid
                    self._ids_max = max(self._ids_max, sid)
                    self._unsaved += 1
            else:
                self._ids = dict(self.db.query(f"SELECT {_KEY}, id FROM series"))
                self._ids_max = max(self._ids.values(), default=0)
                self._unsaved = len(self._ids)
        return self._ids

    def _ids_by_name(self, names: set[str]) -> dict[str, int] | None:
        """The write map for a few metric names, without loading the whole map: a pass of
        spool frames writes only the self-metrics as rows (three per spool file: 6,000 at
        a million series, whose whole map would be ~100 MB and ~0.4 s to load)."""
        if len(names) > 50:
            return None
        if not names:
            return {}
        return dict(
            self.db.query(
                f"SELECT {_KEY}, id FROM series WHERE name IN ({','.join('?' * len(names))})",
                sorted(names),
            )
        )

    def _by_key(self, pairs: Sequence[tuple[str, str]]) -> dict[str, int]:
        """Ids of these (name, label text) pairs, read by the unique key."""
        out: dict[str, int] = {}
        for i in range(0, len(pairs), _BY_KEY_CHUNK):
            chunk = pairs[i : i + _BY_KEY_CHUNK]
            out.update(
                self.db.query(
                    f"SELECT {_KEY}, id FROM series WHERE (name, labels) IN "
                    f"(VALUES {','.join(['(?, ?)'] * len(chunk))})",
                    [p for pair in chunk for p in pair],
                )
            )
        return out

    def ids_for(self, series: WriteKeys, clock: Clock) -> tuple[Sequence[int], int]:
        """Ids of the series ``series``, in order, creating the missing ones stamped by
        ``clock``; and how many this writer did not know.

        The ids are a ``range`` when this write created every one of its series, each
        once (keys all new and distinct: a first pass), and a list otherwise.

        Must run inside the caller's write transaction, so new series and their samples
        commit together; what it learns is kept by :meth:`commit` and dropped by
        :meth:`rollback`, one of which the caller calls when the transaction ends.
        """
        self._pending = None
        source = series
        keys: list[str] | None = None
        known: dict[str, int] | None = None
        if self._ids is None and len(source) <= _BY_NAME_MAX_KEYS:
            keys = source.all()
            known = self._ids_by_name(source.metric_names())
            if known is not None:
                found = list(map(known.get, keys))
                if None not in found:
                    return cast("list[int]", found), 0
        ids = self._series_ids()
        pending = self._pending = _Pending(self._ids_max, self._unsaved)
        now_ms = int(clock.now() * 1000)
        if not ids and self.db.dialect.name == "sqlite":
            return self._create_all(source, now_ms, pending)
        if keys is None:
            keys = source.all()
        sids = list(map(ids.get, keys))
        if None not in sids:
            if pending.unsaved > _SNAPSHOT_STALE:  # others added many: refresh it
                self._save_snapshot(ids, pending)
            return cast("list[int]", sids), 0
        # duplicates left in: the insert skips a key's second row, and reads back the ids
        # of a batch that skipped any (deduplicating a million keys first costs ~0.3 s)
        missing = list(compress(keys, map(_is_none, sids))) if ids else keys
        if self.db.dialect.name != "sqlite":
            # new series: those neither this writer nor its lookups found stored (whoever
            # creates them, this write or another writer meanwhile)
            if known:  # read by name just now: only the rest are looked up by key
                missing = [k for k in missing if k not in known]
            learned, new = self._find_or_create_pg(missing, now_ms)
            if known:
                learned = {**known, **learned}
            pending.ids = learned
            sids = [learned[k] if sid is None else sid for k, sid in zip(keys, sids, strict=True)]
            return cast("list[int]", sids), new
        learned, runs = self._create(missing, now_ms)
        for run_keys, first in runs:
            learned.update(zip(run_keys, range(first, first + len(run_keys)), strict=True))
        pending.ids = learned
        pending.ids_max = max(chain((pending.ids_max,), learned.values()))
        created = len(learned)
        pending.unsaved += created
        self._save_snapshot({**ids, **learned}, pending)
        sids = [learned[k] if sid is None else sid for k, sid in zip(keys, sids, strict=True)]
        return cast("list[int]", sids), created

    def _create_all(
        self, series: WriteKeys, now_ms: int, pending: _Pending
    ) -> tuple[Sequence[int], int]:
        """SQLite, the table empty as far as this writer knows (a first pass): every series
        is new. The keys are built, inserted and added to the snapshot a batch at a time,
        none kept past its batch (a million keys would hold ~120 MB), and the write map is
        dropped at commit: a later write that needs it loads the snapshot. The ids are
        given in order from the newest, so nothing is read back unless a batch skipped a
        key (one written twice); the ids come back as a ``range`` unless one did."""
        base = int(self.db.query("SELECT coalesce(max(id), 0) FROM series")[0][0])
        pending.forget_map = True
        pending.ids_max = max(pending.ids_max, base + len(series))
        made = self._create_unindexed(series, now_ms, base, pending)
        if made is not None:
            return made, len(series)
        snapshot, created, sids = self._create_batches(series, now_ms, base)
        pending.unsaved += created
        self._save_snapshot(_msgpack_map(snapshot, created), pending)
        return sids, created

    def _create_unindexed(
        self, series: WriteKeys, now_ms: int, base: int, pending: _Pending
    ) -> range | None:
        """A first pass into a table no bigger than what it adds (ids are never deleted, so
        ``base`` bounds its rows): the unique key is dropped, the rows appended, the
        snapshot saved (its ~45 MB a million freed before the sort), and the key built
        again in one sort (~0.8 s a million, against ~1.2 s more for inserts through it).
        A key written twice, or one already there (a writer whose map was stale), fails the
        build: the savepoint takes the whole attempt back and None says to insert batch by
        batch. The writer lock held since BEGIN IMMEDIATE keeps other writers out, and
        readers see the table as it was, key included, until the commit."""
        import sqlite3

        n = len(series)
        if n < _UNINDEXED_MIN or base > n:
            return None
        snapshot = bytearray(_MAP_HEAD)
        unsaved = pending.unsaved
        try:
            with self.db.savepoint():
                self.db.execute("DROP INDEX series_key")
                for i in range(0, n, _CREATE_CHUNK):
                    keys = series.slice(i, i + _CREATE_CHUNK)
                    first = base + i + 1
                    text, quoted = _sqlite_keys(keys)
                    self.db.execute(_CREATE_SQLITE[quoted, True], (first, now_ms, text))
                    _msgpack_pairs(snapshot, keys, range(first, first + len(keys)))
                del keys, text
                pending.unsaved += n
                self._save_snapshot(_msgpack_map(snapshot, n), pending)
                del snapshot
                self.db.execute(SERIES_KEY_INDEX)
        except sqlite3.IntegrityError:
            pending.unsaved = unsaved
            return None
        return range(base + 1, base + 1 + n)

    def _create_batches(
        self, series: WriteKeys, now_ms: int, base: int
    ) -> tuple[bytearray, int, Sequence[int]]:
        """A first pass's batches inserted through the unique key, skipping the keys it
        already has: (the snapshot's pairs, how many, every id in order)."""
        snapshot, created = bytearray(_MAP_HEAD), 0
        sids: list[int] | None = None  # once a batch skipped a key: every id so far
        for i in range(0, len(series), _CREATE_CHUNK):
            keys = series.slice(i, i + _CREATE_CHUNK)
            first = base + i + 1
            text, quoted = _sqlite_keys(keys)
            done = self.db.execute(_CREATE_SQLITE[quoted, False], (first, now_ms, text))
            if done.rowcount == len(keys):
                created += _msgpack_pairs(snapshot, keys, range(first, first + len(keys)))
                if sids is not None:
                    sids.extend(range(first, first + len(keys)))
                continue
            got = self._read_back(keys)
            if sids is None:
                sids = list(range(base + 1, first))
            sids.extend(map(got.__getitem__, keys))
            new = {k: sid for k, sid in got.items() if sid >= first}  # not an earlier batch's
            created += _msgpack_pairs(snapshot, new, new.values())
        if sids is None:
            return snapshot, created, range(base + 1, base + 1 + len(series))
        return snapshot, created, sids

    def _create(self, keys: list[str], now_ms: int) -> tuple[dict[str, int], list[Run]]:
        """SQLite: insert the series ``keys`` (each ``name{labels``, in any order) in
        batches of one statement each, the rows built in SQL from one array parameter;
        return their ids. Those another writer created meanwhile are read by key.

        The write transaction holds the database's one write lock, so the ids after the
        newest are free, and none is read back (a million new series: no million-row
        read, no second copy of their keys). Such batches come back as runs, in order, one
        id after another while no batch skipped a key; a batch that did (a key twice, or
        one this writer's map missed) is read back into the dict. (PostgreSQL: see
        :meth:`_find_or_create_pg`.)"""
        out: dict[str, int] = {}
        base = int(self.db.query("SELECT coalesce(max(id), 0) FROM series")[0][0])
        runs: list[Run] = []
        for i in range(0, len(keys), _CREATE_CHUNK):
            chunk = keys[i : i + _CREATE_CHUNK]
            first = base + i + 1
            text, quoted = _sqlite_keys(chunk)
            created = self.db.execute(_CREATE_SQLITE[quoted, False], (first, now_ms, text))
            if created.rowcount == len(chunk):
                runs.append((chunk, first))
            else:
                out.update(self._read_back(chunk))
        return out, runs

    def _find_or_create_pg(self, keys: list[str], now_ms: int) -> tuple[dict[str, int], int]:
        """PostgreSQL: the ids of ``keys`` (``name{labels``, any order, repeats allowed),
        found by key or created; and how many were not found (created by this write, or by
        another meanwhile).

        No writer reads the whole table or a snapshot of it: the keys a write does not
        know are looked up, a statement per :data:`_PG_CHUNK`, by the unique key (not at
        all in an empty table: a first pass). The rest get ids drawn from the sequence in
        their order (consecutive for a lone writer, so layouts count their positions out
        in SQL) and go in with ``COPY``, sorted, so two writers creating the same series
        lock them in one order. ``COPY`` has no ``ON CONFLICT``: if another writer
        committed one of the keys meanwhile, its savepoint takes the copy back and the
        keys go in through an ``INSERT`` that skips those, whose ids are read back."""
        if not keys:
            return {}, 0
        distinct = list(dict.fromkeys(keys))
        empty = not self.db.query("SELECT 1 FROM series LIMIT 1")
        out = {} if empty else self._lookup_pg(distinct)
        new = [k for k in distinct if k not in out] if out else distinct
        if not new:
            return out, 0
        ids = self._draw_ids(len(new))
        order = sorted(range(len(new)), key=new.__getitem__)
        if self._copy_series(new, ids, order, now_ms):
            out.update(zip(new, ids, strict=True))
            return out, len(new)
        from signalbox.storage import pgarrays

        raced: list[str] = []
        for i in range(0, len(order), _PG_CHUNK):
            chunk = order[i : i + _PG_CHUNK]
            chunk_keys = [new[j] for j in chunk]
            pgarrays.bind(self.db.conn)
            done = self.db.execute(
                _CREATE_POSTGRES,
                (
                    now_ms,
                    pgarrays.int8_array([ids[j] for j in chunk]),
                    pgarrays.text_array(chunk_keys),
                ),
            )
            if done.rowcount == len(chunk):
                out.update(zip(chunk_keys, (ids[j] for j in chunk), strict=True))
            else:  # another writer created some meanwhile: theirs are the ids
                raced.extend(chunk_keys)
        if raced:
            got = self._lookup_pg(raced)
            lost = [k for k in raced if k not in got]
            if lost:  # cannot happen short of a broken database: say which, never guess
                raise StoreError(f"{self.db.url}: series {lost[:5]} were inserted but not found")
            out.update(got)
        return out, len(new)

    def _copy_series(
        self, keys: list[str], ids: Sequence[int], order: list[int], now_ms: int
    ) -> bool:
        """``COPY`` the series ``keys`` with ``ids``, in ``order``, inside a savepoint;
        False when one of them exists already (the savepoint undid the copy)."""
        import psycopg

        db = self.db
        try:
            with (
                db.savepoint(),
                db.conn.cursor() as cur,
                cur.copy("COPY series (id, name, labels, created_ms) FROM STDIN") as copy,
            ):
                write = copy.write_row
                for j in order:
                    name, _, labels = keys[j].partition("{")
                    write((ids[j], name, labels, now_ms))
        except psycopg.errors.UniqueViolation:
            return False
        except psycopg.DataError as e:  # a NUL (the parsers refuse it; a direct write may not)
            bad = [keys[j] for j in order if "\x00" in keys[j]][:3]
            raise StoreError(f"{db.path}: series {bad or ''} cannot be stored: {e}") from e
        except psycopg.Error as e:  # a full disk, a dropped connection...: named as such
            named = translate(e, "postgresql", db.path)
            if named is not None:
                raise named from e
            raise
        return True

    def _draw_ids(self, n: int) -> Sequence[int]:
        """``n`` ids from the series' sequence: a ``range`` when they are consecutive (no
        other writer drew meanwhile), else the list."""
        lo, hi, every = self.db.query(
            "SELECT min(v), max(v), CASE WHEN max(v) - min(v) + 1 = count(*) THEN NULL "
            "ELSE array_agg(v ORDER BY v) END "
            "FROM (SELECT nextval('series_id_seq') AS v FROM generate_series(1, ?)) AS s",
            (n,),
        )[0]
        return range(int(lo), int(hi) + 1) if every is None else list(every)

    def _lookup_pg(self, keys: list[str]) -> dict[str, int]:
        """PostgreSQL: ids of those of ``keys`` (distinct) the table has, read by key."""
        out: dict[str, int] = {}
        from signalbox.storage import pgarrays

        for i in range(0, len(keys), _PG_CHUNK):
            chunk = keys[i : i + _PG_CHUNK]
            try:
                text = pgarrays.text_array(chunk)
            except ValueError as e:  # a NUL, which no text on the server may hold
                raise StoreError(f"{self.db.path}: a series cannot be looked up: {e}") from e
            rows = self.db.query(_LOOKUP_POSTGRES, (text,))
            out.update((chunk[o - 1], sid) for o, sid in rows)
        return out

    def _read_back(self, keys: list[str]) -> dict[str, int]:
        """Ids of series ``keys`` just inserted or found existing, read by key."""
        got = self._by_key([(k[: k.index("{")], k[k.index("{") + 1 :]) for k in keys])
        lost = [key for key in keys if key not in got]
        if lost:  # cannot happen short of a broken database: say which, never guess
            raise StoreError(f"{self.db.url}: series {lost[:5]} were inserted but not found")
        return got

    def _save_snapshot(self, ids: dict[str, int] | bytearray, pending: _Pending) -> None:
        """Inside the write transaction: rewrite the snapshot (kept only if it commits).

        If another writer's open transaction is rewriting it (PostgreSQL), this one leaves it
        to a later write rather than wait: it is only a cache, and waiting would make every
        writer creating series wait for every other's commit."""
        import msgspec

        db = self.db
        if db.dialect.name != "sqlite":  # PostgreSQL's writers look their keys up instead
            return
        lock = f"SELECT max_id FROM series_ids_snapshot WHERE id = 1{db.dialect.skip_locked}"
        if not db.query(lock) and db.query("SELECT 1 FROM series_ids_snapshot WHERE id = 1"):
            return  # locked by another writer
        data = ids if isinstance(ids, bytearray) else msgspec.msgpack.encode(ids)
        if db.dialect.name == "sqlite" and len(data) > _SNAPSHOT_STREAM_MIN:
            self._stream_snapshot(data, pending.ids_max)
        else:
            db.execute(
                db.dialect.upsert("series_ids_snapshot", ["id", "max_id", "data"], ["id"]),
                (1, pending.ids_max, data),
            )
        pending.unsaved = 0

    def _stream_snapshot(self, data: bytes | bytearray, ids_max: int) -> None:
        """SQLite: a zero blob of the snapshot's size, then its bytes written into it in
        pieces -- bound as a parameter, a snapshot of a million series (~40 MB) would be
        copied whole into SQLite's memory first."""
        import sqlite3

        db = self.db
        db.execute(
            "INSERT INTO series_ids_snapshot (id, max_id, data) VALUES (1, ?, zeroblob(?)) "
            "ON CONFLICT (id) DO UPDATE SET max_id = excluded.max_id, data = excluded.data",
            (ids_max, len(data)),
        )
        view = memoryview(data)
        try:
            with db.conn.blobopen("series_ids_snapshot", "data", 1) as blob:
                for i in range(0, len(view), 1 << 22):
                    blob.write(view[i : i + (1 << 22)])
        except sqlite3.Error as e:  # named as every statement's error is (a full disk...)
            named = translate(e, "sqlite", db.path)
            if named is not None:
                raise named from e
            raise

    def commit(self) -> None:
        """The write transaction committed: keep what it learned."""
        p, self._pending = self._pending, None
        if p is None or self._ids is None:
            return
        if p.forget_map:  # a first pass: the snapshot it saved holds the map
            self._ids, self._ids_max, self._unsaved = None, 0, 0
            return
        self._ids.update(p.ids)
        self._ids_max, self._unsaved = p.ids_max, p.unsaved

    def rollback(self) -> None:
        """The write transaction rolled back: forget what it learned (the ids of series it
        created, and its snapshot, no longer exist)."""
        self._pending = None
