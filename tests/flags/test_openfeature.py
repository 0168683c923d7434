"""The OpenFeature provider through the real ``openfeature-sdk`` client: boolean, string and
number resolution, reasons, error codes, and never an exception to the caller."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from signalbox.clock import FrozenClock
from signalbox.flags.cache import FlagCache
from signalbox.flags.declarations import load_declarations
from signalbox.flags.memstore import MemoryFlagStore
from signalbox.flags.model import parse_setting
from signalbox.flags.openfeature import SignalboxProvider

DECLS = """\
- {name: static_on, description: a, default: true}
- {name: killed, description: b, default: '50%'}
- {name: rollout, description: c, default: '50%'}
- {name: vip_only, description: d, default: '0%'}
- {name: theme, description: e, default: '100%', values: {on: teal, off: grey}}
- {name: batch, description: f, default: false, values: {on: 500, off: 100}}
- {name: ratio, description: g, default: true, values: {on: 0.5, off: 1}}
"""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[OpenFeatureClient]:
    (tmp_path / "f.yaml").write_text(DECLS)
    decls = load_declarations([tmp_path])
    assert decls.ok, decls.errors
    store = MemoryFlagStore()
    store.set("killed", parse_setting("off"), by="ops", reason="incident", now_ms=0)
    store.set("vip_only", parse_setting("0%", actors=["ann"]), by="ops", reason="beta", now_ms=0)
    cache = FlagCache(store, decls.flags, clock=FrozenClock())
    cache.refresh()
    api.set_provider(SignalboxProvider(cache), domain="signalbox-test")
    yield api.get_client(domain="signalbox-test")
    api.clear_providers()


def ctx(actor: str | None) -> EvaluationContext:
    return EvaluationContext(targeting_key=actor)


def test_boolean_resolution_with_reasons(client: OpenFeatureClient) -> None:
    d = client.get_boolean_details("static_on", False)
    assert (d.value, d.reason, d.variant, d.error_code) == (True, Reason.STATIC, "on", None)
    d = client.get_boolean_details("killed", True, ctx("ann"))
    assert (d.value, d.reason) == (False, Reason.STATIC)
    d = client.get_boolean_details("vip_only", False, ctx("ann"))
    assert (d.value, d.reason) == (True, Reason.TARGETING_MATCH)
    d = client.get_boolean_details("vip_only", True, ctx("bob"))
    assert (d.value, d.reason) == (False, Reason.DEFAULT)
    answers = [client.get_boolean_details("rollout", False, ctx(f"u{i}")) for i in range(200)]
    on = [a for a in answers if a.value]
    assert 60 < len(on) < 140 and {a.reason for a in on} == {Reason.SPLIT}


def test_string_and_number_resolution_of_flags_that_select_a_value(
    client: OpenFeatureClient,
) -> None:
    d = client.get_string_details("theme", "none", ctx("u1"))
    assert (d.value, d.reason, d.variant) == ("teal", Reason.SPLIT, "on")
    d = client.get_integer_details("batch", 0, ctx("u1"))
    assert (d.value, d.reason, d.variant) == (100, Reason.STATIC, "off")
    d = client.get_float_details("ratio", 0.0)
    assert (d.value, d.reason) == (0.5, Reason.STATIC)


def test_errors_answer_the_default_with_a_code_and_never_raise(client: OpenFeatureClient) -> None:
    d = client.get_boolean_details("nope", True)
    assert (d.value, d.reason, d.error_code) == (True, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
    for value, details in (
        ("x", client.get_string_details("static_on", "x")),
        (False, client.get_boolean_details("theme", False)),
        (7, client.get_integer_details("theme", 7)),
        ({"a": 1}, client.get_object_details("static_on", {"a": 1})),
    ):
        assert (details.value, details.reason, details.error_code) == (
            value, Reason.ERROR, ErrorCode.TYPE_MISMATCH,
        )  # fmt: skip
    assert client.get_boolean_value("nope", False) is False


def test_without_a_configured_client_the_provider_says_not_ready() -> None:
    api.set_provider(SignalboxProvider(), domain="signalbox-unconfigured")
    try:
        d = api.get_client(domain="signalbox-unconfigured").get_boolean_details("x", True)
        assert (d.value, d.reason, d.error_code) == (
            True,
            Reason.ERROR,
            ErrorCode.PROVIDER_NOT_READY,
        )
    finally:
        api.clear_providers()
