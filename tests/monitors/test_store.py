"""Persisted monitor state, history, silences and acks, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from signalbox.monitors.definitions.model import State
from signalbox.monitors.engine.evaluate import SeriesState
from signalbox.monitors.state.records import Ack, HistoryEntry, SeriesRecord
from signalbox.monitors.state.store import MonitorStore
from signalbox.storage import Database, open_database

T0 = 1_700_000_000_000


def _record(
    state: State = State.CRITICAL, labels: tuple[tuple[str, str], ...] = (("shard", "7"),)
) -> SeriesRecord:
    s = SeriesState(
        state=state,
        since=T0,
        pending=State.CRITICAL if state is State.WARNING else None,
        pending_since=T0 + 5 if state is State.WARNING else None,
        last_value=9.25,
        last_seen_ms=T0 + 10,
        reason='resize = 9.25 > 8 "quoted"',
        warning_since=T0 - 60_000,
        critical_since=T0,
        history=(State.OK, State.WARNING, State.CRITICAL, State.UNKNOWN),
        flap_percent=12.5,
        flapping=True,
    )
    return SeriesRecord(
        "resize_slow", labels, s, State.CRITICAL, T0, T0 + 10, "firing", "photo_db", T0 + 10
    )


def test_series_state_round_trips_every_field(db: Database) -> None:
    store = MonitorStore(db)
    recs = [_record(), _record(State.WARNING, (("path", 'a\\b"c\nd'), ("shard", "8")))]
    store.save_series(recs)
    got = store.series()
    assert got == {"resize_slow": {r.labels: r for r in recs}}
    assert MonitorStore(db).series("other") == {}


def test_saving_again_replaces_and_removed_series_are_deleted(db: Database) -> None:
    store = MonitorStore(db)
    a, b = _record(), _record(labels=(("shard", "8"),))
    store.save_series([a, b])
    store.save_series(
        [SeriesRecord(a.monitor, a.labels, SeriesState.initial(T0 + 99))],
        removed=[(b.monitor, b.labels)],
    )
    ((labels, rec),) = store.series()["resize_slow"].items()
    assert (
        labels == a.labels
        and rec.state == SeriesState.initial(T0 + 99)
        and rec.notified_state is None
    )


def test_a_nan_value_is_stored_as_no_value(db: Database) -> None:
    store = MonitorStore(db)
    r = _record()
    store.save_series(
        [SeriesRecord(r.monitor, r.labels, SeriesState(State.OK, T0, last_value=float("nan")))]
    )
    assert store.series()["resize_slow"][r.labels].state.last_value is None


def test_history_is_kept_in_time_order_and_filtered_by_since(db: Database) -> None:
    store = MonitorStore(db)
    store.add_history(
        [
            HistoryEntry(
                "m",
                (("shard", "7"),),
                T0 + 2000,
                "state",
                "recovered",
                State.CRITICAL,
                State.OK,
                3.0,
            ),
            HistoryEntry(
                "m",
                (("shard", "7"),),
                T0,
                "state",
                "x = 9 > 8",
                State.OK,
                State.CRITICAL,
                9.0,
                "silenced by #1",
            ),
            HistoryEntry("other", (), T0, "state", "nope", State.OK, State.WARNING),
        ]
    )
    all_ = store.history("m")
    assert [(e.at_ms, e.to_state, e.value, e.note) for e in all_] == [
        (T0, State.CRITICAL, 9.0, "silenced by #1"),
        (T0 + 2000, State.OK, 3.0, ""),
    ]
    assert [e.reason for e in store.history("m", since_ms=T0 + 1)] == ["recovered"]
    assert [e.reason for e in store.history("m", limit=1)] == ["recovered"]


def test_a_silence_records_who_why_until_and_matches_by_label_subset(db: Database) -> None:
    store = MonitorStore(db)
    s = store.add_silence(
        "m", (("shard", "7"),), now_ms=T0, until_ms=T0 + 7_200_000, by="alice", reason="deploy"
    )
    assert (s.id, s.created_by, s.reason, s.until_ms) == (s.id, "alice", "deploy", T0 + 7_200_000)
    assert s.matches("m", (("host", "a"), ("shard", "7"))) and not s.matches("m", (("shard", "8"),))
    assert not s.matches("other", (("shard", "7"),))
    assert store.silences(active_at=T0 + 1) == [s]
    assert store.silences(active_at=T0 + 7_200_000) == []  # expired exactly at until
    (h,) = store.history("m")
    assert (
        h.event == "silenced" and "alice: deploy" in h.reason and h.note.startswith("until 2023-")
    )


def test_ending_silences_ends_only_active_ones_of_that_monitor(db: Database) -> None:
    store = MonitorStore(db)
    store.add_silence("m", (), now_ms=T0, until_ms=T0 + 1000, by="a", reason="old")
    live = store.add_silence("m", (), now_ms=T0, until_ms=T0 + 10_000, by="a", reason="live")
    other = store.add_silence("n", (), now_ms=T0, until_ms=T0 + 10_000, by="a", reason="n")
    ended = store.end_silences("m", now_ms=T0 + 2000, by="bob")
    assert [e.id for e in ended] == [live.id]
    assert store.silences(active_at=T0 + 2001) == [other]
    assert (
        store.history("m")[-1].event == "unsilenced"
        and "ended by bob" in store.history("m")[-1].reason
    )


def test_an_ack_covers_non_ok_series_and_holds_until_the_state_changes(db: Database) -> None:
    store = MonitorStore(db)
    firing, ok = _record(), _record(State.OK, (("shard", "9"),))
    store.save_series([firing, ok])
    acks = store.acknowledge("resize_slow", now_ms=T0 + 100, by="carol", reason="looking")
    assert acks == [Ack("resize_slow", firing.labels, T0 + 100, "carol", "looking", State.CRITICAL)]
    ack = store.acks()[("resize_slow", firing.labels)]
    assert ack.holds(firing.state)
    assert not ack.holds(SeriesState(State.WARNING, T0 + 200))  # de-escalated: a new state
    assert not ack.holds(SeriesState(State.CRITICAL, T0 + 200))  # left and came back
    assert store.history("resize_slow")[-1].reason == "acknowledged by carol: looking"


def test_migrations_are_idempotent_and_data_survives_reopening(db: Database) -> None:
    MonitorStore(db).save_series([_record()])
    assert MonitorStore(db).series()["resize_slow"][_record().labels] == _record()


states = st.sampled_from(list(State))
opt_ms = st.none() | st.integers(0, 2**53)
series_states = st.builds(
    SeriesState,
    state=states,
    since=st.integers(0, 2**53),
    pending=st.none() | states,
    pending_since=opt_ms,
    last_value=st.none() | st.floats(allow_nan=False),
    last_seen_ms=opt_ms,
    reason=st.text(),
    warning_since=opt_ms,
    critical_since=opt_ms,
    history=st.lists(states, max_size=21).map(tuple),
    flap_percent=st.floats(0, 100),
    flapping=st.booleans(),
)
label_sets = st.dictionaries(
    st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True), st.text(), max_size=3
).map(lambda d: tuple(sorted(d.items())))


@given(state=series_states, labels=label_sets, notified=st.none() | states)
@settings(max_examples=60, deadline=None)
def test_any_series_record_round_trips_through_sqlite(
    state: SeriesState, labels: tuple[tuple[str, str], ...], notified: State | None
) -> None:
    db = open_database("sqlite:///:memory:")
    store = MonitorStore(db)
    rec = SeriesRecord("m", labels, state, notified, 1, 2, "repeat", "", 3)
    store.save_series([rec])
    assert store.series() == {"m": {labels: rec}}
    db.close()
