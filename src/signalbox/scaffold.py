"""What ``signalbox init`` writes: a commented config, example monitors and flags, the spool
dir (the one the config names, when a config was there already).

Files that exist are never touched, so ``init`` is safe to run again after an upgrade to
pick up only what is new.
"""

from __future__ import annotations

from pathlib import Path

CONFIG = """\
# signalbox.toml: every setting is shown with its default. Relative paths are relative to
# this file's folder. Docs: README.md.

# Names this machine in every series it collects (default: the hostname; $SIGNALBOX_HOST wins).
# host = "web1"

# Where data lives. SQLite by default; "postgresql://user@db/signalbox" for many hosts.
# store = "sqlite:///.signalbox/signalbox.db"
data_dir = ".signalbox"

[collect]
# How often spool files and the StatsD buffer are collected.
interval = "15s"
# Apps drop *.metrics (key=value lines) or *.prom (Prometheus text) files here.
spool_dir = ".signalbox/spool"
# Files larger than this are refused (and reported).
max_file_bytes = 4194304
# A spool file not rewritten for this long is stale: its values stop being collected.
stale_after = "5m"
# serve and agent hold the passes the store refuses (the database away, a full disk) in
# memory, to store them at their own times once it can; past this many samples
# (~40-270 bytes each) the oldest are dropped, and the log and metrics say so.
buffer_max_samples = 250000

[statsd]
enabled = true
listen = "127.0.0.1:8125"
# What one client can cost: new series accepted per collection interval (in all, and from one
# address), live series held, and how long a silent series is kept.
max_new_series_per_interval = 10000
max_new_series_per_source = 5000
max_series = 100000
stale_after = "15m"

[retention]
# Raw samples are kept this long...
raw = "1d"
# ...then rollups (min/max/avg/count/last) at RESOLUTION:KEEP, finest first.
tiers = "1m:8d,5m:35d,1h:400d"

[server]
# serve binds to localhost unless told otherwise.
host = "127.0.0.1"
port = 8910
# Log a warning when serve's resident memory passes this many bytes (0: never); the
# signalbox_process_* metrics report it every pass either way.
memory_warn_bytes = 0
# Who needs an API token (`signalbox tokens create`): "writes" (silences, acks,
# drills; reads are open to loopback) or "required" (reads too). serve listens beyond
# 127.0.0.1 only with "required".
auth = "writes"
# MiB of query answers (query_range, and query at a given time) kept until the data
# changes, so dashboards that refresh ask the store once (0: no cache).
query_cache_mb = 64
# MiB of decoded packed rollup units kept between queries (0: none); unlike
# query_cache_mb it survives writes: a week-long panel re-reads only its recent end.
packed_cache_mb = 64
# MiB of raw samples kept between queries (0: none): the last hours' panels and
# monitors read memory; a write into a partition makes its copy stale, read again.
raw_cache_mb = 32
# With a PostgreSQL store, the serve instances elect one leader (it evaluates monitors,
# sends notifications and compacts); a dead leader is replaced within about this long.
leader_ttl = "10s"

[query]
# What one query over the HTTP API (or `signalbox query`) may cost, as Prometheus'
# --query.timeout / --query.max-samples / --query.max-concurrency.
timeout = "2m"
max_samples = 50000000
max_concurrency = 20
# Past heavy_samples a query is heavy; heavy_concurrency of them run at once, the rest
# wait their turn, so cheap queries and health checks stay fast meanwhile.
heavy_samples = 1000000
heavy_concurrency = 2

[monitors]
paths = ["monitors"]
interval = "30s"
# Re-notify while a monitor keeps firing.
repeat = "4h"
# A failed notification is retried after retry_delay, doubling up to retry_max_delay.
retry_delay = "10s"
retry_max_delay = "10m"

[tasks]
# Modules whose @signalbox.task / @signalbox.periodic functions `signalbox worker` runs
# (import paths, found from this folder).
# modules = ["myapp.tasks"]
# Queues a worker serves (empty: all; `signalbox worker --queue Q` overrides).
# queues = []
# concurrency = 1
# A job whose worker died runs again this long after (heartbeats renew it for long jobs).
# lease = "30s"
# Failures allowed before a job is dead (kept for `signalbox tasks retry ID`); a failed run is
# retried after retry_delay, doubling up to retry_max_delay, with jitter.
# retries = 3
# retry_delay = "10s"
# retry_max_delay = "1h"
# A closed gate defers a job (never failing it) for defer_delay, doubling up to defer_max_delay.
# defer_delay = "10s"
# defer_max_delay = "5m"
# Where the queue lives (default: tasks.db beside a SQLite store; the same PostgreSQL database).
# store = "sqlite:///.signalbox/tasks.db"
# Each enqueue survives the kill of any process; true also survives power loss (an fsync each).
# durable = false

# Gates: load feedback for offline jobs (`signalbox gates check` shows each one's reading).
# A closed gate defers the jobs behind it; it closes at the high mark and reopens below the low.
# [gates.db]
# kind = "mysql_load"
# dsn_env = "SHARD7_DSN"          # or dsn = "mysql://monitor@db7:3306/" (no password in files)
# max_running = [40, 30]          # high and low mark (a number alone: low = 80% of it)
# [gates.replication]
# kind = "mysql_replication"
# dsns = ["mysql://monitor@db7a:3306/", "mysql://monitor@db7b:3306/"]
# max_lag = "30s"

[flags]
# Flag declarations (defaults, owner, description): `signalbox flags list` shows them.
paths = ["flags"]
# How soon a `signalbox flags set` is seen by every process (each re-reads the store this often).
refresh = "2s"
# A flag fully on or off, unchanged this long, is flag debt (`signalbox flags list --stale`).
stale_after = "30d"
# Staff may force flags for one request (?features=name,-other or the header), only on requests
# the app marks as staff; off unless true.
override = false
override_param = "features"
override_header = "X-Signalbox-Features"

[instrument]
# The WSGI/ASGI middleware's access log: one line per request with its notes and request id
# ("-": standard output; "": none). format = "combined" (Apache's, notes appended) or "json".
# access_log = ".signalbox/access.log"
format = "combined"
# Notes logged as a keyed fingerprint (`signalbox logs fp KEY`), never in clear; the key comes
# from $SIGNALBOX_LOG_KEY, else key_file (made when missing, mode 0600).
secret_notes = ["api_key"]
# key_file = ".signalbox/log.key"
# An incoming X-Request-ID is kept when it is a sane token; every response echoes the id.
request_id_header = "X-Request-ID"
trust_request_id = true
# http_requests_total and http_request_duration_seconds per route, method and status class.
metrics = true
# Lines are written in batches, at most this many and this late (buffer_lines = 1: at once).
buffer_lines = 256
flush_interval = "200ms"

# Forward each stored pass to peers you already run: on when its table is there.
# [forward.graphite]
# address = "127.0.0.1:2003"
# prefix = ""
# naming = "tags"          # name;label=value (Graphite 1.1+) or "dotted": name.label.value
# interval = "0s"          # send what waits at most this often ("0s": each pass at once)
# max_buffer = 100000      # samples waiting for the peer; past it the oldest are dropped
# timeout = "2s"           # a peer that takes longer is down: passes wait, retried
# [forward.ganglia]
# address = "127.0.0.1:8649"   # a gmond's udp_recv_channel
# group = "signalbox"
# lifetime = "10m"         # gmetric's dmax: gmond forgets a series not sent this long
# interval = "0s"
# max_buffer = 100000
# timeout = "2s"

# Notifiers that monitors name in `notify:`.
[notifiers.ops]
type = "log"
"""

MONITORS = """\
# Monitors are code: review them, test them (`signalbox monitors test`), and backtest a
# threshold change against history before merging it (`signalbox monitors backtest`).
- name: image_processing_slow
  description: Resizes are slower than users tolerate; uploads back up behind them.
  owner: photos
  runbook: https://wiki.example/runbooks/resize
  query: avg_over_time(image_processing_time[5m])
  warning: "> 4"
  critical: "> 8"
  for: 3m
  recover: "< 3"
  no_data: unknown
  notify: [ops]
"""

MONITOR_TESTS = """\
# Unit tests for monitors/example.yaml: series in, expected states out (`signalbox monitors test`).
# Values use promtool's expanding notation: '2x5' is six 2s, '1+1x3' is 1 2 3 4, '_' is missing.
interval: 1m
tests:
  - name: slow resizes warn, then page, then recover only below 3
    input_series:
      - series: 'image_processing_time{host="web1"}'
        values: '2x5 12x9 1x10'
    expect:
      - {at: 8m, monitor: image_processing_slow, state: warning, pending: true, labels: {host: web1}}
      - {at: 11m, monitor: image_processing_slow, state: warning, labels: {host: web1}}
      - {at: 13m, monitor: image_processing_slow, state: critical, labels: {host: web1}}
      - {at: 17m, monitor: image_processing_slow, state: warning, labels: {host: web1}}
      - {at: 19m, monitor: image_processing_slow, state: warning, labels: {host: web1}}
      - {at: 21m, monitor: image_processing_slow, state: ok, labels: {host: web1}}
    expect_notifications:
      - {monitor: image_processing_slow, firing: 3, resolved: 1}   # warning, critical, back to warning
"""

QUEUE_MONITORS = """\
# The task queue's backlog (`signalbox_queue_depth`, written by `signalbox worker`): page at
# the high water mark, clear only below the low one.
- name: photos_backlog
  description: Photo jobs pile up faster than workers drain them; users wait for thumbnails.
  owner: photos
  queue: {name: photos, high: 1000, low: 10}
  for: 5m
  no_data: ok
  notify: [ops]
"""

FLAGS = """\
# Feature flags: defaults live here, reviewed like code; runtime changes (`signalbox flags
# set`) are stored and audited. Ops can force any flag off in seconds.
- name: photo_uploads
  description: Accept new photo uploads; turn off to shed write load.
  owner: photos
  default: true
"""


def scaffold(directory: Path) -> list[tuple[Path, bool]]:
    """Create what is missing; return ``(path, created)`` for everything considered."""
    directory.mkdir(parents=True, exist_ok=True)
    out: list[tuple[Path, bool]] = []
    for rel, content in (
        ("signalbox.toml", CONFIG),
        ("monitors/example.yaml", MONITORS),
        ("monitors/example_test.yaml", MONITOR_TESTS),
        ("monitors/queues.yaml", QUEUE_MONITORS),
        ("flags/example.yaml", FLAGS),
    ):
        path = directory / rel
        if path.exists():
            out.append((path, False))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        out.append((path, True))
    spool = configured_spool_dir(directory / "signalbox.toml")
    existed = spool.is_dir()
    spool.mkdir(parents=True, exist_ok=True)
    out.append((spool, not existed))
    return out


def configured_spool_dir(config: Path) -> Path:
    """The spool dir ``config`` names (the default one for the file ``init`` writes): an
    existing config may point elsewhere, and that is the dir collection will read.

    Raises:
        ConfigError: the existing config is not valid.
    """
    from signalbox.config import load_settings

    spool: Path = load_settings(str(config)).metrics.spool_dir
    try:  # shown as the other paths are: under the folder as given
        return config.parent / spool.relative_to(config.parent.resolve())
    except ValueError:
        return spool
