"""Loading and linting monitor YAML: every rule pins file, line, key and message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from signalbox.monitors.definitions.load import (
    LintError,
    LoadResult,
    is_monitor_test_file,
    load_monitors,
)
from signalbox.monitors.definitions.model import (
    FlagAction,
    Flapping,
    NagiosCheck,
    QueueCheck,
    StaleCheck,
    State,
    ThresholdCheck,
)
from signalbox.monitors.definitions.threshold import Threshold

SPEC_EXAMPLE = """\
- name: image_processing_slow
  description: Resizes slower than users tolerate.     # why it exists: required
  owner: photos
  runbook: https://wiki.example/runbooks/resize
  query: avg_over_time(image_processing_time[5m])
  warning: "> 4"
  critical: "> 8"
  for: 3m            # must hold this long before firing
  recover: "< 3"     # hysteresis: back to OK only below this
  no_data: unknown   # ok | warning | critical | unknown
  notify: [ops]
  depends_on: [photo_db_down]   # optional: no page while the DB monitor is firing
  on_critical: {flag: photo_uploads, set: "off"}    # optional self-healing action
- name: photo_db_down
  description: The photo database does not answer.
  query: up{job="photo_db"}
  critical: "== 0"
"""

GOOD = """\
- name: good
  description: A monitor with nothing wrong.
  query: up
  critical: "== 0"
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load_one(tmp_path: Path, text: str, **kw: object) -> tuple[LoadResult, Path]:
    path = write(tmp_path, "monitors.yaml", text)
    return load_monitors([path], **kw), path  # type: ignore[arg-type]


def the_error(result: LoadResult) -> LintError:
    assert len(result.errors) == 1, "\n".join(str(e) for e in result.errors)
    return result.errors[0]


def monitor_yaml(**fields: str) -> str:
    """One monitor item; ``fields`` are raw YAML values; the value "DROP" leaves the key out."""
    base = {"name": "m", "description": "why", "query": "up", "critical": '"== 0"'}
    base.update(fields)
    lines = [f"{k}: {v}" for k, v in base.items() if v != "DROP"]
    return "- " + "\n  ".join(lines) + "\n"


# -- what loads -----------------------------------------------------------------------------


def test_the_spec_example_loads_with_every_field(tmp_path: Path) -> None:
    result, path = load_one(tmp_path, SPEC_EXAMPLE, notifiers={"ops"})
    assert result.errors == () and result.ok
    m, db = result.monitors
    assert (
        m.name == "image_processing_slow" and m.description == "Resizes slower than users tolerate."
    )
    assert (m.owner, m.runbook) == ("photos", "https://wiki.example/runbooks/resize")
    assert m.check == ThresholdCheck(
        "avg_over_time(image_processing_time[5m])",
        Threshold(">", 4),
        Threshold(">", 8),
        Threshold("<", 3),
    )
    assert (m.for_seconds, m.no_data, m.notify, m.depends_on) == (
        180.0,
        State.UNKNOWN,
        ("ops",),
        ("photo_db_down",),
    )
    assert m.on_critical == FlagAction("photo_uploads", "off") and m.on_warning is None
    assert (m.file, m.line) == (str(path), 1)
    assert (db.name, db.line, db.kind) == ("photo_db_down", 14, "threshold")


def test_every_kind_and_optional_key_loads(tmp_path: Path) -> None:
    result, _ = load_one(
        tmp_path,
        """\
        - name: spool.photos-stale
          description: The photo resizer stopped writing metrics.
          stale: {spool_file: "photos*.metrics", after: 10m, severity: warning}
          labels: {team: photos, tier: 1}
          repeat: 1h
          flapping: {low: 10, high: 40}
          on_warning: {flag: photo_uploads, set: 50%}
        - name: db_stale
          description: No samples from the database exporter.
          stale: {metric: 'mysql_up{instance="db1"}', after: 5m}
          flapping: false
        - name: disk
          description: Root disk filling up.
          command: [/usr/lib/nagios/plugins/check_disk, -w, 10%, -c, 5, -p, /]
          timeout: 30s
        - name: disk2
          description: Same, as one command line.
          command: check_disk -w '10%' -p "/var/lib"
        - name: photos_backlog
          description: Photo jobs pile up.
          queue: {name: photos, high: 1000, low: 10}
          no_data: OK
        """,
    )
    assert result.errors == ()
    stale, db, disk, disk2, backlog = result.monitors
    assert stale.check == StaleCheck(600.0, spool_file="photos*.metrics", severity=State.WARNING)
    assert stale.labels == (("team", "photos"), ("tier", "1"))
    assert (stale.repeat_seconds, stale.flapping) == (3600.0, Flapping(10, 40))
    assert stale.on_warning == FlagAction("photo_uploads", "50%")
    assert db.check == StaleCheck(300.0, metric='mysql_up{instance="db1"}')
    assert db.flapping == Flapping(enabled=False)
    assert disk.check == NagiosCheck(
        ("/usr/lib/nagios/plugins/check_disk", "-w", "10%", "-c", "5", "-p", "/"), 30.0
    )
    assert disk2.check == NagiosCheck(("check_disk", "-w", "10%", "-p", "/var/lib"), 10.0)
    assert backlog.check == QueueCheck("photos", 1000, 10)
    assert backlog.no_data is State.OK
    assert [m.kind for m in result.monitors] == [
        "staleness",
        "staleness",
        "nagios",
        "nagios",
        "queue",
    ]


def test_a_directory_means_its_yaml_files_sorted_without_tests_or_hidden_files(
    tmp_path: Path,
) -> None:
    def mon(name: str) -> str:
        return GOOD.replace("name: good", f"name: {name}")

    write(tmp_path, "b.yaml", mon("from_b"))
    write(tmp_path, "a.yml", mon("from_a"))
    write(tmp_path, "sub/c.yaml", mon("from_sub"))
    write(tmp_path, "a_test.yaml", "not: monitors")
    write(tmp_path, "b.test.yml", "not: monitors")
    write(tmp_path, ".hidden.yaml", "not: monitors")
    write(tmp_path, ".git/x.yaml", "not: monitors")
    write(tmp_path, "notes.txt", "not: monitors")
    result = load_monitors([tmp_path])
    assert result.errors == ()
    assert [m.name for m in result.monitors] == ["from_a", "from_b", "from_sub"]


def test_monitor_test_files_are_recognised_by_name() -> None:
    assert is_monitor_test_file(Path("x/photos_test.yaml"))
    assert is_monitor_test_file(Path("photos.test.yml"))
    assert not is_monitor_test_file(Path("photos.yaml"))
    assert not is_monitor_test_file(Path("latest.yaml"))


def test_the_same_file_given_twice_is_read_once(tmp_path: Path) -> None:
    path = write(tmp_path, "m.yaml", GOOD)
    result = load_monitors([path, tmp_path])
    assert result.errors == () and len(result.monitors) == 1


def test_an_empty_file_defines_no_monitors(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, "# nothing yet\n")
    assert result.monitors == () and result.errors == ()


# -- file level errors ------------------------------------------------------------------------


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    result = load_monitors([tmp_path / "nope.yaml"])
    assert the_error(result) == LintError(
        str(tmp_path / "nope.yaml"), 0, None, None, "no such file or directory"
    )


def test_yaml_syntax_errors_carry_the_line(tmp_path: Path) -> None:
    result, path = load_one(tmp_path, GOOD + "- name: broken\n  description: [unclosed\n")
    e = the_error(result)
    assert (e.file, e.line, e.monitor, e.key) == (str(path), 7, None, None)
    assert e.message.startswith("YAML syntax error: ")
    assert str(e).startswith(f"{path}:7: YAML syntax error")


def test_the_top_level_must_be_a_list(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, "name: m\ndescription: x\n")
    e = the_error(result)
    assert (e.line, e.key) == (1, None)
    assert (
        e.message == "expected a list of monitors (each starting with '- name: ...'), got a mapping"
    )


def test_an_item_that_is_not_a_mapping_is_reported_and_the_rest_still_load(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, GOOD + "- just a string\n")
    e = the_error(result)
    assert (e.line, e.key) == (5, None)
    assert e.message.startswith("expected a monitor (a mapping with name, description, query, ...)")
    assert "'just a string'" in e.message
    assert [m.name for m in result.monitors] == ["good"]


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"- name: \xff\n")
    e = the_error(load_monitors([path]))
    assert (e.line, e.message[:15]) == (0, "not UTF-8 text:")


# -- keys -----------------------------------------------------------------------------------


def test_unknown_keys_suggest_the_closest_known_key(tmp_path: Path) -> None:
    result, path = load_one(tmp_path, monitor_yaml(critcal='"> 1"'))
    # critical is also present, so only the typo is wrong
    e = the_error(result)
    assert (e.file, e.line, e.monitor, e.key) == (str(path), 5, "m", "critcal")
    assert e.message.startswith(
        "unknown key 'critcal' (did you mean 'critical'?): expected one of "
    )
    assert result.monitors == ()


def test_a_key_given_twice_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml() + '  critical: "> 5"\n')
    e = the_error(result)
    assert (e.line, e.key) == (5, "critical")
    assert e.message == "'critical' is given twice (first on line 4); say it once"


@pytest.mark.parametrize(
    ("drop", "key", "message"),
    [
        ("name", "name", "missing 'name': every monitor needs a unique name"),
        ("description", "description", "missing 'description': say why this monitor exists"),
        ("query", "query", "missing what to check: expected one of 'query', 'stale', 'command'"),
    ],
)
def test_required_keys_are_reported_at_the_monitor(
    tmp_path: Path, drop: str, key: str, message: str
) -> None:
    fields = {drop: "DROP"}
    if drop == "query":
        fields["critical"] = "DROP"
    result, _ = load_one(tmp_path, GOOD + monitor_yaml(**fields))
    e = the_error(result)
    assert (e.line, e.key) == (5, key) and e.message.startswith(message)
    assert [m.name for m in result.monitors] == ["good"]


def test_an_empty_description_is_refused(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(description='""'))
    e = the_error(result)
    assert (e.line, e.key) == (2, "description")
    assert e.message == "expected a sentence saying why this monitor exists, got ''"


def test_a_bad_name_says_which_characters_are_allowed(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(name='"Image Slow"'))
    e = the_error(result)
    assert (e.line, e.monitor, e.key) == (1, "Image Slow", "name")
    assert "expected lowercase letters, digits, '_', '.' or '-'" in e.message


def test_a_monitor_checks_exactly_one_thing(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(command="check_dummy 0"))
    e = the_error(result)
    assert (e.line, e.key) == (5, "command")
    assert e.message.startswith("'command' cannot be combined with 'query'")


def test_keys_of_another_kind_are_refused(tmp_path: Path) -> None:
    text = monitor_yaml(query="DROP", critical="DROP", command="check_dummy 0", warning='"> 1"')
    text += monitor_yaml(name="q2", timeout="5s")
    result, _ = load_one(tmp_path, text)
    assert [(e.line, e.monitor, e.key) for e in result.errors] == [
        (4, "m", "warning"),
        (9, "q2", "timeout"),
    ]
    assert (
        result.errors[0].message
        == "'warning' applies only to monitors with a 'query' (this one has 'command')"
    )
    assert (
        result.errors[1].message
        == "'timeout' applies only to monitors with a 'command' (this one has 'query')"
    )


# -- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "3x",
            "bad duration '3x': expected a number and a unit (ms, s, m, h, d, w, y), like 30s or 1h30m",
        ),
        ("5", "expected a duration like 30s, 5m or 1h30m, got 5"),
        ("[1m]", "expected a duration like 30s, 5m or 1h30m, got a list"),
    ],
)
def test_bad_durations_say_what_a_duration_looks_like(
    tmp_path: Path, value: str, message: str
) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(**{"for": value}))
    e = the_error(result)
    assert (e.line, e.key, e.message) == (5, "for", message)


def test_repeat_must_be_above_zero_but_for_may_be_zero(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(repeat="0s", **{"for": "0s"}))
    e = the_error(result)
    assert (e.key, e.message) == ("repeat", "expected a duration above zero, got '0s'")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            '">>4"',
            "bad threshold '>>4': expected an operator (>, >=, <, <=, ==, !=) and a number, like \"> 4\"",
        ),
        (
            "4",
            'bad threshold 4: expected an operator (>, >=, <, <=, ==, !=) and a number, like "> 4" (a quoted string in YAML)',
        ),
    ],
)
def test_bad_thresholds_say_what_was_expected(tmp_path: Path, value: str, message: str) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(critical=value))
    e = the_error(result)
    assert (e.line, e.key, e.message) == (4, "critical", message)


def test_a_query_monitor_needs_a_threshold(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(critical="DROP"))
    e = the_error(result)
    assert (e.line, e.key) == (3, "query")
    assert e.message.startswith("a query monitor needs 'warning' or 'critical'")


def test_a_query_that_does_not_parse_is_reported_at_its_line(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(query="avg_over_time(x[5m]"))
    e = the_error(result)
    assert (e.line, e.key) == (3, "query")
    assert e.message.startswith("query does not parse: ")


def test_unsupported_promql_is_refused_naming_the_construct(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(query='"holt_winters(x[5m], 0.5, 0.5)"'))
    e = the_error(result)
    assert e.key == "query" and "holt_winters" in e.message and "not supported" in e.message


def test_a_query_error_in_a_block_scalar_points_at_the_offending_line(tmp_path: Path) -> None:
    text = (
        "- name: m\n"
        "  description: why\n"
        "  query: |\n"
        "    sum by (shard) (\n"
        "      rate(x[5m]) * * 2\n"
        "    )\n"
        '  critical: "> 1"\n'
    )
    result, _ = load_one(tmp_path, text)
    e = the_error(result)
    assert (e.line, e.key) == (5, "query")


def test_a_range_vector_query_is_refused(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(query='"x[5m]"'))
    e = the_error(result)
    assert e.key == "query"
    assert e.message.startswith("query returns a range vector, not one value per series")


@pytest.mark.parametrize(
    ("fields", "line", "key", "start"),
    [
        (
            {"warning": '"> 8"', "critical": '"> 4"'},
            5,
            "critical",
            'critical "> 4" fires at 6 where warning "> 8" does not',
        ),
        ({"warning": '"< 4"', "critical": '"> 8"'}, 5, "critical", 'critical "> 8" fires at'),
        (
            {"warning": '"> 4"', "critical": '">= 4.0"'},
            5,
            "critical",
            'critical ">= 4" fires at 4 where',
        ),
        (
            {"warning": '"> 4"', "critical": '"> 4"'},
            5,
            "critical",
            'critical "> 4" and warning "> 4" fire on the same values',
        ),
        (
            {"warning": '"> 4"', "recover": '"< 9"'},
            5,
            "recover",
            'recover "< 9" overlaps warning "> 4" (both hold at',
        ),
        (
            {"warning": '"> 4"', "recover": '"<= 4.5"'},
            5,
            "recover",
            'recover "<= 4.5" overlaps warning',
        ),
    ],
)
def test_contradicting_thresholds_are_reported(
    tmp_path: Path, fields: dict[str, str], line: int, key: str, start: str
) -> None:
    text = "- name: m\n  description: why\n  query: up\n"
    text += "".join(f"  {k}: {v}\n" for k, v in fields.items())
    result, _ = load_one(tmp_path, text)
    e = the_error(result)
    assert (e.line, e.key) == (line, key), e
    assert e.message.startswith(start), e.message


def test_recover_just_on_the_ok_side_is_fine(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(critical="DROP", warning='"> 4"', recover='"<= 4"'))
    assert result.errors == ()


def test_no_data_must_be_one_of_four(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(no_data="maybe"))
    e = the_error(result)
    assert (e.line, e.key, e.message) == (
        5,
        "no_data",
        "expected one of ok, warning, critical, unknown, got 'maybe'",
    )


def test_runbook_must_be_a_url(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(runbook="wiki/resize"))
    e = the_error(result)
    assert (e.key, e.message) == (
        "runbook",
        "expected a URL starting with http:// or https://, got 'wiki/resize'",
    )


def test_bad_label_names_are_reported(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(labels="{team: a, 1x: b, __x: c}"))
    assert [(e.key, e.line) for e in result.errors] == [("labels.1x", 5), ("labels.__x", 5)]
    assert result.errors[0].message.startswith("bad label name '1x'")


@pytest.mark.parametrize(
    ("value", "key", "message"),
    [
        (
            "{flag: f, set: half}",
            "on_critical.set",
            'bad set value \'half\': expected "on", "off" or a percentage from 0% to 100%',
        ),
        ("{flag: f, set: 150%}", "on_critical.set", "bad set value '150%'"),
        ("{set: 'on'}", "on_critical.flag", "missing 'flag' in on_critical"),
        (
            "{flag: f, set: 'on', when: now}",
            "on_critical.when",
            "unknown key 'when' in on_critical",
        ),
        ("off", "on_critical", "expected a mapping with keys flag, set"),
    ],
)
def test_bad_flag_actions_are_reported(tmp_path: Path, value: str, key: str, message: str) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(on_critical=value))
    e = the_error(result)
    assert (e.line, e.key) == (5, key)
    assert e.message.startswith(message), e.message


def test_unquoted_on_and_off_mean_on_and_off(tmp_path: Path) -> None:
    result, _ = load_one(
        tmp_path, monitor_yaml(on_critical="{flag: a, set: off}", on_warning="{flag: b, set: on}")
    )
    [m] = result.monitors
    assert (m.on_critical, m.on_warning) == (FlagAction("a", "off"), FlagAction("b", "on"))


@pytest.mark.parametrize(
    ("value", "key", "message"),
    [
        ("{spool_file: x.metrics}", "stale.after", "missing 'after'"),
        ("{after: 5m}", "stale", "expected 'metric' or 'spool_file' in stale"),
        (
            "{metric: up, spool_file: x, after: 5m}",
            "stale.spool_file",
            "give either 'metric' or 'spool_file'",
        ),
        (
            "{metric: 'rate(x[5m])', after: 5m}",
            "stale.metric",
            "expected a metric name or selector",
        ),
        ("{metric: 'up{', after: 5m}", "stale.metric", "query does not parse"),
        (
            "{metric: up, after: 5m, severity: info}",
            "stale.severity",
            "expected warning or critical, got 'info'",
        ),
        (
            "{metric: up, aftr: 5m}",
            "stale.aftr",
            "unknown key 'aftr' in stale (did you mean 'after'?)",
        ),
    ],
)
def test_bad_staleness_checks_are_reported(
    tmp_path: Path, value: str, key: str, message: str
) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(query="DROP", critical="DROP", stale=value))
    keys = [e.key for e in result.errors]
    assert key in keys, result.errors
    e = result.errors[keys.index(key)]
    assert e.line == 3 and e.message.startswith(message), e.message
    assert result.monitors == ()


@pytest.mark.parametrize(
    ("value", "key", "message"),
    [
        (
            "{name: photos, high: 10, low: 10}",
            "queue.low",
            "low water mark 10 must be below high water mark 10",
        ),
        ("{name: photos, low: 10}", "queue.high", "missing 'high' in queue"),
        ("{name: photos, high: lots, low: 1}", "queue.high", "expected a number, got 'lots'"),
        ("{name: photos, high: 5, low: -1}", "queue.low", "expected a depth of 0 or more, got -1"),
    ],
)
def test_bad_queue_checks_are_reported(tmp_path: Path, value: str, key: str, message: str) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(query="DROP", critical="DROP", queue=value))
    e = the_error(result)
    assert (e.line, e.key) == (3, key) and e.message.startswith(message), e.message


@pytest.mark.parametrize(
    ("value", "line", "message"),
    [
        ("[]", 3, "expected a command like [check_disk, -w, 10%], got an empty list"),
        (
            '"check_disk -w \'10%"',
            3,
            'cannot split command line "check_disk -w \'10%": No closing quotation',
        ),
        ("[check_disk, [nested]]", 3, "expected a command-line argument, got a list"),
    ],
)
def test_bad_commands_are_reported(tmp_path: Path, value: str, line: int, message: str) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(query="DROP", critical="DROP", command=value))
    e = the_error(result)
    assert (e.line, e.key, e.message) == (line, "command", message)


@pytest.mark.parametrize(
    ("value", "key", "message"),
    [
        ("{low: 30, high: 20}", "flapping.low", "low (30%) must be below high (20%)"),
        ("{high: 120}", "flapping.high", "expected a percent from 0 to 100, got 120"),
        (
            "sometimes",
            "flapping",
            "expected false or a mapping like {low: 20, high: 30}, got 'sometimes'",
        ),
    ],
)
def test_bad_flapping_thresholds_are_reported(
    tmp_path: Path, value: str, key: str, message: str
) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(flapping=value))
    e = the_error(result)
    assert (e.line, e.key, e.message) == (5, key, message)


# -- notifiers and dependencies ----------------------------------------------------------------


def test_notify_names_must_be_configured_notifiers(tmp_path: Path) -> None:
    text = "- name: m\n  description: why\n  query: up\n  critical: '== 0'\n  notify:\n    - ops\n    - opps\n"
    result, _ = load_one(tmp_path, text, notifiers={"ops", "pager"})
    e = the_error(result)
    assert (e.line, e.key) == (7, "notify")
    assert (
        e.message
        == "unknown notifier 'opps' (did you mean 'ops'?): expected one of ops, pager (in signalbox.toml)"
    )


def test_notify_names_are_not_checked_without_a_notifier_list(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(notify="[anything]"))
    assert result.errors == () and result.monitors[0].notify == ("anything",)


def test_notify_with_no_notifiers_configured_says_so(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(notify="ops"), notifiers=set())
    assert "no notifiers are configured" in the_error(result).message


def test_duplicate_names_across_files_name_both_places(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", GOOD)
    b = write(tmp_path, "b.yaml", "# another team\n" + GOOD)
    result = load_monitors([tmp_path])
    e = the_error(result)
    assert (e.file, e.line, e.monitor, e.key) == (str(b), 2, "good", "name")
    assert e.message == f"duplicate monitor name 'good': also defined at {a}:1"
    assert [m.file for m in result.monitors] == [str(a)]


def test_depends_on_an_unknown_monitor_suggests_a_close_name(tmp_path: Path) -> None:
    text = GOOD + monitor_yaml(depends_on="[god]")
    result, _ = load_one(tmp_path, text)
    e = the_error(result)
    assert (e.line, e.monitor, e.key) == (9, "m", "depends_on")
    assert e.message == "unknown monitor 'god' (did you mean 'good'?)"


def test_depends_on_may_name_a_monitor_in_another_file(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", monitor_yaml(depends_on="good"))
    result = load_monitors([tmp_path])
    assert result.errors == () and result.monitors[1].depends_on == ("good",)


def test_a_dependency_cycle_is_reported_on_each_monitor_in_it(tmp_path: Path) -> None:
    text = (
        monitor_yaml(name="a", depends_on="[b]")
        + monitor_yaml(name="b", depends_on="[c]")
        + monitor_yaml(name="c", depends_on="[a, good]")
        + GOOD
    )
    result, _ = load_one(tmp_path, text)
    assert [(e.monitor, e.line, e.key) for e in result.errors] == [
        ("a", 5, "depends_on"),
        ("b", 10, "depends_on"),
        ("c", 15, "depends_on"),
    ]
    assert result.errors[0].message == "'b' forms a dependency cycle: a -> b -> c -> a"
    assert result.errors[2].message == "'a' forms a dependency cycle: c -> a -> b -> c"
    assert [m.name for m in result.monitors] == ["good"]


def test_a_monitor_that_depends_on_itself_is_a_cycle(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, monitor_yaml(depends_on="m"))
    assert the_error(result).message == "'m' forms a dependency cycle: m -> m"


# -- never stop at the first error ----------------------------------------------------------------


def test_every_error_in_every_file_is_reported_and_good_monitors_still_load(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        GOOD
        + monitor_yaml(name="bad1", critical='">>1"', no_data="never")
        + GOOD.replace("good", "good2"),
    )
    write(tmp_path, "b.yaml", "- name: [oops\n")
    write(
        tmp_path,
        "c.yaml",
        monitor_yaml(name="bad2", description="DROP") + GOOD.replace("good", "good3"),
    )
    result = load_monitors([tmp_path])
    summary = [(Path(e.file).name, e.line, e.key) for e in result.errors]
    assert summary == [
        ("a.yaml", 8, "critical"),
        ("a.yaml", 9, "no_data"),
        ("b.yaml", 2, None),
        ("c.yaml", 1, "description"),
    ]
    assert [m.name for m in result.monitors] == ["good", "good2", "good3"]
    assert not result.ok


def test_lint_error_text_reads_file_line_monitor_key_message() -> None:
    e = LintError("m.yaml", 3, "slow", "critical", "bad threshold")
    assert str(e) == "m.yaml:3: slow: critical: bad threshold"
    assert str(LintError("m.yaml", 0, None, None, "no such file")) == "m.yaml: no such file"


def test_yaml_merge_keys_share_defaults_and_explicit_keys_override_them(tmp_path: Path) -> None:
    text = """\
    - &defaults
      name: base
      description: Shared defaults.
      query: up
      critical: "== 0"
      for: 5m
    - <<: *defaults
      name: copy
      for: 1m
    """
    result, _ = load_one(tmp_path, text)
    assert result.errors == ()
    assert [(m.name, m.for_seconds) for m in result.monitors] == [("base", 300.0), ("copy", 60.0)]


def test_a_merge_of_something_that_is_not_a_mapping_is_reported(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, "- name: m\n  <<: [1, 2]\n")
    e = result.errors[0]
    assert (e.line, e.monitor) == (1, "m") and e.message.startswith("cannot merge: ")


def test_an_unquoted_greater_than_threshold_gets_a_quoting_hint(tmp_path: Path) -> None:
    result, _ = load_one(tmp_path, "- name: m\n  description: d\n  query: up\n  warning: > 4\n")
    e = the_error(result)
    assert e.line == 4 and e.message.startswith("YAML syntax error: ")
    assert e.message.endswith('(a threshold starting with ">" must be quoted, like warning: "> 4")')
