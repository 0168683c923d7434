"""Placeholders: ``?`` outside literals becomes psycopg's ``%s``; literal ``?`` and ``%`` survive."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signalbox.storage import Database, open_database
from signalbox.storage.placeholders import qmark_to_format
from tests.stores import PG_BASE


@pytest.mark.parametrize(
    ("portable", "psycopg"),
    [
        ("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = %s AND c = %s"),
        ("SELECT '?', 'a%b', ?", "SELECT '?', 'a%%b', %s"),
        ("SELECT 1 WHERE x LIKE 'a%' AND y = ?", "SELECT 1 WHERE x LIKE 'a%%' AND y = %s"),
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', %s"),
        ("SELECT E'a\\'?', ?", "SELECT E'a\\'?', %s"),
        ('SELECT "odd?name" FROM t WHERE k = ?', 'SELECT "odd?name" FROM t WHERE k = %s'),
        ("SELECT ? -- why? 100%\n, ?", "SELECT %s -- why? 100%%\n, %s"),
        ("SELECT /* ? */ ?", "SELECT /* ? */ %s"),
        ("SELECT $$?$$, $q$ it's ? $q$, ?", "SELECT $$?$$, $q$ it's ? $q$, %s"),
        ("SELECT 10 % 3, ?", "SELECT 10 %% 3, %s"),
    ],
)
def test_placeholders_outside_literals_only(portable: str, psycopg: str) -> None:
    assert qmark_to_format(portable) == psycopg


@given(st.text(alphabet=st.characters(blacklist_characters="\x00")))
def test_any_string_literal_passes_through_with_percent_doubled(text: str) -> None:
    literal = "'" + text.replace("'", "''") + "'"
    assert qmark_to_format(f"SELECT {literal}, ?") == (f"SELECT {literal.replace('%', '%%')}, %s")


@pytest.mark.parametrize(
    ("sql", "params", "expected"),
    [
        ("SELECT '?', 'a%b', ?", (5,), ("?", "a%b", 5)),
        ("SELECT 'x?y' || ?, '100%'", ("!",), ("x?y!", "100%")),
        ("SELECT CASE WHEN 'abc' LIKE 'a%' THEN ? ELSE 'no?' END", ("yes",), ("yes",)),
        ('SELECT 7 AS "what?", ? -- trailing? 50%', (8,), (7, 8)),
        ("SELECT /* ?, % */ ?, 'it''s?'", (1,), (1, "it's?")),
    ],
)
def test_literal_question_marks_and_percents_run_alike_on_both_backends(
    db: Database, sql: str, params: tuple[object, ...], expected: tuple[object, ...]
) -> None:
    assert db.query(sql, params) == [expected]


@pytest.fixture(scope="module")
def pg() -> Iterator[Database]:
    d = open_database(PG_BASE)
    yield d
    d.close()


@pytest.mark.service("postgresql")
@given(
    text=st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))
)
def test_any_literal_reaches_postgresql_unchanged(pg: Database, text: str) -> None:
    literal = "'" + text.replace("'", "''") + "'"
    assert pg.query(f"SELECT {literal}, ?", (1,)) == [(text, 1)]
