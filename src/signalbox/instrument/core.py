"""What the ASGI and WSGI middleware share: a request's start (its id) and its end (its line).

The adapters (:mod:`~signalbox.instrument.asgi`, :mod:`~signalbox.instrument.wsgi`) only
read their protocol's request and response; this core decides the id, turns the notes into
logged text (API keys fingerprinted, long values cut), writes the line and counts the
request. Its settings come from ``[instrument]`` of ``signalbox.toml`` unless given.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from signalbox.instrument import flagnotes
from signalbox.instrument.accesslog import (
    _STATUS,
    _tok,
    bracket,
    bytes_field,
    combined_parts,
    combined_target,
    combined_with_pairs,
    fingerprint,
    json_line,
    note_key,
    quoted_safe,
    quoted_value,
)
from signalbox.instrument.context import (
    REQUEST_ID,
    RequestContext,
    Traceparent,
    new_id,
    parse_traceparent,
)
from signalbox.instrument.logfile import AccessLogFile, reopen_on_sighup
from signalbox.instrument.metrics import RequestMetrics

if TYPE_CHECKING:
    from signalbox.config import Settings
    from signalbox.flags.context import RequestFlags

__all__ = ["DEFAULT", "Instrument", "load_secret"]

log = logging.getLogger("signalbox")


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()
"""An argument left to ``[instrument]`` of ``signalbox.toml``."""
_KEY_CACHE_MAX = 1024
_WRITTEN_MAX = 1024
_PARTS_MAX = 4096  # combinations of client, method, protocol, referer, user agent, route
_TARGETS_MAX = 4096  # paths with their query strings
_NO_PARENT = "0" * 16
_NO_NOTES: Mapping[str, str] = MappingProxyType({})

Raw = str | bytes
Fields = Callable[[Any], tuple[str, Raw, Raw, str, str, Raw, Raw, str]]
"""An adapter's reader of a finished request: ``source`` -> (method, path, query, protocol,
client, referer, user agent, route). Path, query, referer and user agent may be the bytes
the server gave (ASGI's): they are decoded (Latin-1) only when a line's pieces kept for them
are not found (see :meth:`Instrument.finish`)."""


def _str(value: Raw) -> str:
    return value.decode("latin-1") if type(value) is bytes else value  # type: ignore[return-value]


_Entry = tuple[str | None, str, str, int, float]
"""A buffered request: its line (None: no access log) and what its count needs -- route,
method, status, seconds. Strings and numbers only, made as the request finished: a queue of
256 requests' scopes, contexts and notes kept alive made the garbage collector run about six
times a flush under uvicorn, where the bare app's requests free all they make."""


def load_secret(settings: Settings, environ: Mapping[str, str] | None = None) -> bytes:
    """The key API keys are fingerprinted with: ``$<key_env>`` when set, else the key file
    (made with 32 random bytes, mode 0600, when missing; many processes may race to make
    it, one wins and all read it). ``signalbox logs fp`` uses the same key."""
    inst = settings.instrument
    env = os.environ if environ is None else environ
    value = env.get(inst.key_env)
    if value:
        return value.encode("utf-8")
    path = inst.key_path(settings.data_dir)
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, os.urandom(32).hex().encode() + b"\n")
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process made it first: theirs is kept
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if not key:
        raise ValueError(f"{path}: the access-log fingerprint key file is empty")
    return key


def _text(value: Any) -> str:
    """A note value as logged: strings as they are, numbers as text, collections as JSON."""
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, (list, tuple, dict)):
        try:
            return json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


class Instrument:
    """The request lifecycle both adapters drive (see the module docstring).

    Every argument left as :data:`DEFAULT` comes from ``settings`` (loaded from
    ``signalbox.toml`` when not given, once, at construction). ``access_log``: a path,
    ``"-"`` for standard output, or None for no line at all. ``metrics``: False for none, or
    a :class:`RequestMetrics` of your own. ``secret``: the fingerprint key (bytes); by
    default :func:`load_secret`, read at the first secret note. ``clock`` gives wall time
    (the line's time), ``timer`` the duration.
    """

    def __init__(
        self,
        *,
        access_log: str | os.PathLike[str] | None = DEFAULT,
        format: str = DEFAULT,
        host: str = DEFAULT,
        secret_notes: tuple[str, ...] | list[str] = DEFAULT,
        secret: bytes | None = None,
        metrics: bool | RequestMetrics = DEFAULT,
        request_id_header: str = DEFAULT,
        trust_request_id: bool = DEFAULT,
        max_note_chars: int = DEFAULT,
        buffer_lines: int = DEFAULT,
        flush_interval: float = DEFAULT,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        given = (
            access_log,
            format,
            host,
            secret_notes,
            metrics,
            request_id_header,
            trust_request_id,
            max_note_chars,
            buffer_lines,
            flush_interval,
        )
        if settings is None and any(v is DEFAULT for v in given):
            from signalbox.config import load_settings

            settings = load_settings()
        self.settings = settings
        inst = settings.instrument if settings is not None else None

        def pick(value: Any, name: str) -> Any:
            return getattr(inst, name) if value is DEFAULT else value

        if access_log is DEFAULT:
            assert settings is not None
            access_log = settings.instrument.access_log_path(settings.data_dir)
        fmt = pick(format, "format")
        if fmt not in ("combined", "json"):
            raise ValueError(f'format={fmt!r}: expected "combined" or "json"')
        self.format: str = fmt
        self._combined = fmt == "combined"
        self.host: str = settings.host if host is DEFAULT and settings is not None else host
        self.secret_notes = frozenset(pick(secret_notes, "secret_notes"))
        # the same names as query parameters (Flickr's ?api_key=): their values fingerprinted
        self._secret_params = (
            re.compile(
                r"(?:^|(?<=[?&;]))("
                + "|".join(re.escape(n) for n in sorted(self.secret_notes))
                + r")=([^&;#]*)"
            )
            if self.secret_notes
            else None
        )
        self._secret_probes = tuple(f"{n}=" for n in self.secret_notes)  # cheap pre-check
        self._secret = secret
        self.request_id_header: str = pick(request_id_header, "request_id_header")
        self.trust_request_id: bool = pick(trust_request_id, "trust_request_id")
        self.max_note_chars: int = pick(max_note_chars, "max_note_chars")
        m = pick(metrics, "metrics")
        self.metrics: RequestMetrics | None = (
            m
            if isinstance(m, RequestMetrics)
            else RequestMetrics(_metrics_client(settings))
            if m
            else None
        )
        self.log_file: AccessLogFile | None = None
        if access_log is not None:
            self.log_file = AccessLogFile(access_log)
            if self.log_file.path != "-":
                reopen_on_sighup()
        self.clock, self.timer = clock, timer
        self.buffer_lines: int = max(1, pick(buffer_lines, "buffer_lines"))
        self.flush_interval: float = pick(flush_interval, "flush_interval_s")
        buffered = self.buffer_lines > 1 and (self.log_file is not None or self.metrics is not None)
        self._queue: deque[_Entry] | None = deque() if buffered else None
        self._flusher: threading.Thread | None = None
        self._oldest = 0.0  # when the oldest buffered request ended (wall clock)
        self._flusher_lock = threading.Lock()
        self._stop = threading.Event()
        _cores.add(self)
        self._keys: dict[str, str] = {}  # note key as given -> as logged
        self._fps: dict[str, str] = {}  # recent API keys -> fingerprints
        # (note, str or int value) -> (user_id text, "") or ("", its pair as written)
        self._written: dict[tuple[str, str | int], tuple[str, str]] = {}
        # the combined line's pieces, each kept as written (see finish)
        self._parts: dict[tuple[str, str, str, Raw, Raw, str], tuple[str, str, str, str, str]] = {}
        self._targets: dict[tuple[Raw, Raw], str] = {}
        self._second: tuple[str, str] = ("", "")  # epoch seconds as text, their bracket
        self._failed = False

    # -- start ----------------------------------------------------------------------------
    def begin(self, incoming_id: str | None, traceparent: str | None) -> RequestContext:
        """The context of a request that came with these headers (either may be None)."""
        if incoming_id and self.trust_request_id and REQUEST_ID.match(incoming_id):
            rid = incoming_id
        else:
            rid = new_id()
        return RequestContext(rid, parse_traceparent(traceparent) if traceparent else None)

    # -- end ------------------------------------------------------------------------------
    def finish(
        self,
        ctx: RequestContext,
        start: float,
        seconds: float,
        status: int,
        nbytes: int,
        fields: Fields,
        source: Any,
        /,
    ) -> None:
        """Count the request and write its line (buffered: queue them for :meth:`flush`).

        ``fields(source)`` gives the rest of the line -- method, path, query, protocol,
        client, referer, user agent, route -- read from the adapter's own request object
        here, as are the notes: the line is made now, so a buffered request keeps nothing of
        its request alive (see :data:`_Entry`). With no access log and no metrics nothing
        is read. Never raises: a failure is logged once.
        """
        log_file = self.log_file
        if log_file is None and self.metrics is None:
            return  # nothing to write or count: not even the fields are read
        try:
            method, path, query, protocol, client, referer, user_agent, route = fields(source)
            route = ctx.route or route
            line = None
            if log_file is not None:
                notes, trace, flags = ctx.notes, ctx.trace, ctx.flags
                if self._combined and start >= 1.0:
                    # Made of pieces kept per combination of the fields that decide them
                    # (the escaping, the secret fingerprints), so a request pays for
                    # formatting only what is its own: times, status, size, id, notes.
                    epoch = str(int(start * 1_000_000))  # 7 digits at least
                    sec = epoch[:-6]
                    second = self._second
                    if second[0] != sec:
                        second = self._second = (sec, bracket(int(sec)))
                    target = self._targets.get((path, query))
                    if target is None:
                        target = self._target(path, query)
                    parts = self._parts.get((client, method, protocol, referer, user_agent, route))
                    if parts is None:
                        parts = self._line_parts(
                            client, method, protocol, referer, user_agent, route
                        )
                    head, meth, proto, agents, routed = parts
                    if notes or trace is not None or flags is not None:
                        user, pairs = self._pairs(notes, trace, flags)
                        user = _tok(user) if user else "-"
                    else:
                        user, pairs = "-", ""
                    line = (
                        f"{head}{user} [{second[1]}{meth}{target}{proto}"
                        f"{_STATUS.get(status) or f'{status:03d}'} {bytes_field(nbytes)}"
                        f'{agents}{sec}.{epoch[-6:]} request_id="{ctx.request_id}{routed}'
                        f"{int(seconds * 1_000_000)}{pairs}"
                    )  # the id: begin() made it or took a sane one: no escape
                else:
                    path, query, referer, user_agent = (
                        _str(path),
                        _str(query),
                        _str(referer),
                        _str(user_agent),
                    )
                    if self._secret_params is not None:
                        query, referer = self._unkeyed(query, referer)
                    noted = notes or trace is not None or flags is not None
                    if self._combined:
                        user, pairs = self._pairs(notes, trace, flags) if noted else ("", "")
                        line = combined_with_pairs(
                            int(start * 1_000_000), self.host, client, method, path, query,
                            protocol, status, nbytes, referer, user_agent, ctx.request_id,
                            route, int(seconds * 1_000_000), user, pairs,
                        )  # fmt: skip
                    else:
                        line = json_line(
                            int(start * 1_000_000), self.host, client, method, path, query,
                            protocol, status, nbytes, referer, user_agent, ctx.request_id,
                            route, int(seconds * 1_000_000),
                            self._logged_notes(notes, trace, flags) if noted else _NO_NOTES,
                        )  # fmt: skip
            q = self._queue
            if q is None:
                if self.metrics is not None:
                    self.metrics.observe(route, method, status, seconds)
                if line is not None and log_file is not None:
                    log_file.write(line)
                return
            q.append((line, route, method, status, seconds))
            if len(q) == 1:
                self._oldest = start + seconds
            elif (
                len(q) >= self.buffer_lines or start + seconds - self._oldest >= self.flush_interval
            ):
                self.flush()  # here, in the request's thread: see _flush_loop
            if self._flusher is None:
                self._start_flusher()
        except Exception:
            self._failure()

    def _unkeyed(self, query: str, referer: str) -> tuple[str, str]:
        """``query`` and ``referer`` with the values of secret parameters fingerprinted."""
        assert self._secret_params is not None
        if query:
            for probe in self._secret_probes:
                if probe in query:
                    query = self._secret_params.sub(self._fingerprint_param, query)
                    break
        if referer and "=" in referer:  # a page whose URL held a key, sent back
            referer = self._secret_params.sub(self._fingerprint_param, referer)
        return query, referer

    def _target(self, path: Raw, query: Raw) -> str:
        """The combined line's target for ``path`` and ``query``, kept unless it held a
        secret parameter (no API key is kept in memory for it)."""
        p, q = _str(path), _str(query)
        if self._secret_params is not None and q:
            unkeyed = self._unkeyed(q, "")[0]
            if unkeyed != q:
                return combined_target(p, unkeyed)
        target = combined_target(p, q)
        targets = self._targets
        if len(targets) >= _TARGETS_MAX:
            targets.clear()
        targets[path, query] = target
        return target

    def _line_parts(
        self, client: str, method: str, protocol: str, referer: Raw, user_agent: Raw, route: str
    ) -> tuple[str, str, str, str, str]:
        """:func:`combined_parts` for these fields, kept unless the referer held a secret
        parameter."""
        ref = _str(referer)
        unkeyed = self._unkeyed("", ref)[1] if self._secret_params is not None else ref
        parts = combined_parts(
            self.host, client, method, protocol, unkeyed, _str(user_agent), route
        )
        if unkeyed == ref:
            kept = self._parts
            if len(kept) >= _PARTS_MAX:
                kept.clear()
            kept[client, method, protocol, referer, user_agent, route] = parts
        return parts

    def _failure(self) -> None:
        if not self._failed:
            self._failed = True
            log.exception("signalbox access log: could not log a request (logged once)")

    # -- buffered lines -------------------------------------------------------------------
    def flush(self) -> None:
        """Write and count the buffered requests now, their lines in one write (whole
        lines: ``O_APPEND`` keeps them whole beside other processes' writes) and their
        counts in one update of the metrics. Never raises."""
        q = self._queue
        if q is None:
            return
        lines: list[str] = []
        counts: dict[tuple[str, str, int], list[float]] = {}
        counted = self.metrics is not None
        while True:
            try:
                line, route, method, status, seconds = q.popleft()
            except IndexError:
                break
            if line is not None:
                lines.append(line)
            if counted:
                times = counts.get((route, method, status))
                if times is None:
                    counts[route, method, status] = [seconds]
                else:
                    times.append(seconds)
        if lines and self.log_file is not None:
            self.log_file.write("\n".join(lines))
        if counts and self.metrics is not None:
            try:
                self.metrics.observe_many(counts)
            except Exception:
                self._failure()

    def _start_flusher(self) -> None:
        with self._flusher_lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(
                target=self._flush_loop, name="signalbox-access-log", daemon=True
            )
        self._flusher.start()

    def _flush_loop(self) -> None:
        """Flush what waits when no request has come to flush it (traffic stopped).

        While requests come, they flush (the one that finds the buffer full or its oldest
        line ``flush_interval`` old): a thread formatting lines would hold the GIL for
        milliseconds while the server's event loop, giving it up at every socket call,
        waits up to the switch interval each time to get it back (the convoy effect: under
        uvicorn + wrk, flushing here cost a third of the throughput). So this thread acts
        only on lines twice as old, written within about three flush intervals at worst.
        """
        interval = self.flush_interval
        while not self._stop.wait(interval):
            q = self._queue
            if q and self.clock() - self._oldest >= 2 * interval:
                self.flush()

    def _after_fork(self) -> None:
        if self._queue is not None:
            self._queue.clear()  # the parent's requests: the parent writes them
        self._flusher = None
        self._flusher_lock = threading.Lock()
        self._stop = threading.Event()

    def _logged_notes(
        self, notes: dict[str, Any], trace: Traceparent | None, flags: RequestFlags | None
    ) -> Mapping[str, str]:
        out: dict[str, str] = {}
        keys, limit = self._keys, self.max_note_chars
        secret = self.secret_notes
        for k, v in notes.copy().items():  # a copy: a thread may note() meanwhile
            key = keys.get(k)
            if key is None:
                key = note_key(k) if isinstance(k, str) else note_key(str(k))
                if len(keys) < _KEY_CACHE_MAX:
                    keys[k] = key
            t = type(v)
            text = v if t is str else str(v) if t is int else _text(v)
            if key in secret and text:
                text = self._fingerprint(text)
            elif len(text) > limit:
                text = text[: limit - 3] + "..."
            out[key] = text
        if flags is not None and flags.seen and "flags" not in out:
            out["flags"] = flagnotes.text(flags)
        if trace is not None and trace.parent_id != _NO_PARENT and "trace_id" not in out:
            out["trace_id"] = trace.trace_id  # the caller's trace (not one made here)
        return out

    def _pairs(
        self, given: dict[str, Any], trace: Traceparent | None, flags: RequestFlags | None
    ) -> tuple[str, str]:
        """The notes as the combined format writes them: the ``user_id`` note's text and
        every other note as `` key="value"`` pairs, converted and written in one pass (what
        :meth:`_logged_notes` and :func:`combined_line` do in two, through a dict)."""
        notes = given.copy()  # a copy: a thread may note() meanwhile
        user = ""
        parts: list[str] = []
        written = self._written
        for item in notes.items():  # the (k, v) tuple itself is the key: none made
            k, v = item
            t = type(v)
            if t is str or t is int:  # not bool, float: True == 1 == 1.0 as keys
                hit = written.get(item)
                if hit is not None:
                    if hit[1]:
                        parts.append(hit[1])
                    else:
                        user = hit[0]
                    continue
            keys, limit, secret = self._keys, self.max_note_chars, self.secret_notes
            key = keys.get(k)
            if key is None:
                key = note_key(k) if isinstance(k, str) else note_key(str(k))
                if len(keys) < _KEY_CACHE_MAX:
                    keys[k] = key
            if key is not k and key != k:  # renamed: two notes may now share a name
                return self._pairs_of(self._logged_notes(given, trace, flags))
            text = v if t is str else str(v) if t is int else _text(v)
            if key in secret:
                if text:
                    text = self._fingerprint(text)  # fp: and hex digits
            elif len(text) > limit:
                text = text[: limit - 3] + "..."
            if key == "user_id" and text:
                user = text  # the %u field: a token, escaped as one
                if key not in secret and len(written) < _WRITTEN_MAX and (t is str or t is int):
                    written[k, v] = (text, "")
            else:
                # an int's digits need no escape
                part = f' {key}="{text if t is int or quoted_safe(text) else quoted_value(text)}"'
                parts.append(part)
                if key not in secret and len(written) < _WRITTEN_MAX and (t is str or t is int):
                    written[k, v] = ("", part)  # api_method="photos.search" comes back often
        if flags is not None and flags.seen and "flags" not in notes:
            parts.append(f' flags="{quoted_value(flagnotes.text(flags))}"')
        if trace is not None and trace.parent_id != _NO_PARENT and "trace_id" not in notes:
            parts.append(f' trace_id="{quoted_value(trace.trace_id)}"')
        return user, "".join(parts)

    @staticmethod
    def _pairs_of(notes: Mapping[str, str]) -> tuple[str, str]:
        user = notes.get("user_id", "")
        return user, "".join(
            f' {k}="{quoted_value(v)}"' for k, v in notes.items() if not (k == "user_id" and user)
        )

    def _fingerprint(self, key: str) -> str:
        fp = self._fps.get(key)
        if fp is None:
            if self._secret is None:
                if self.settings is None:
                    from signalbox.config import load_settings

                    self.settings = load_settings()
                self._secret = load_secret(self.settings)
            fp = fingerprint(key, self._secret)
            if len(self._fps) >= _KEY_CACHE_MAX:
                self._fps.clear()
            self._fps[key] = fp
        return fp

    def _fingerprint_param(self, m: re.Match[str]) -> str:
        value = unquote_plus(m.group(2))
        return f"{m.group(1)}={self._fingerprint(value) if value else ''}"

    def close(self) -> None:
        """Write what is buffered, close the log file and hand the last request metrics to
        the client."""
        self._stop.set()
        self.flush()
        _cores.discard(self)
        if self.log_file is not None:
            self.log_file.close()
        if self.metrics is not None:
            self.metrics.close()


def _metrics_client(settings: Settings | None) -> Any:
    """Where the request metrics go: with a ``signalbox.toml``, a client of their own in its
    spool dir (``[collect] spool_dir``: the one ``serve``/``agent`` read, whatever the app
    did with the default client; ``SIGNALBOX_SPOOL`` still wins, as for every client);
    without one, the process's default client."""
    if settings is None:
        return None  # RequestMetrics takes the default client
    from signalbox.metrics.client import Client

    return Client(settings.metrics.spool_dir, prog="http")


_cores: weakref.WeakSet[Instrument] = weakref.WeakSet()


def _flush_all() -> None:
    for core in list(_cores):
        core.flush()


def _forked() -> None:
    for core in list(_cores):
        core._after_fork()


atexit.register(_flush_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
