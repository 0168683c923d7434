"""An OpenFeature provider over signalbox's flags, so code written against the OpenFeature
SDK works unchanged::

    from openfeature import api
    from signalbox.flags.openfeature import SignalboxProvider

    api.set_provider(SignalboxProvider())          # the process's flags client
    client = api.get_client()
    client.get_boolean_value("new_checkout", False, EvaluationContext(targeting_key=user_id))

The targeting key is the actor. Boolean resolution answers plain on/off flags; string and
number resolution answer flags declared with ``values: {on: X, off: Y}`` (X when the flag is
on for the actor, Y when off). Reasons: ``STATIC`` (switched on or off for everyone),
``TARGETING_MATCH`` (actor or group allowlist, staff override), ``SPLIT`` (percentage of
actors or of time), ``DEFAULT`` (a rollout whose gates all stayed closed), ``ERROR`` with
``FLAG_NOT_FOUND`` (declared nowhere) or ``TYPE_MISMATCH`` (asked as the wrong type), the
caller's default value then. Nothing here raises to the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from signalbox.flags.cache import FlagCache, Resolution

__all__ = ["SignalboxProvider"]

V = TypeVar("V")

_REASONS: dict[str, Reason] = {
    "on": Reason.STATIC,
    "killed": Reason.STATIC,
    "actor": Reason.TARGETING_MATCH,
    "group": Reason.TARGETING_MATCH,
    "override": Reason.TARGETING_MATCH,
    "percentage_of_actors": Reason.SPLIT,
    "percentage_of_time": Reason.SPLIT,
    "no_gate": Reason.DEFAULT,
    "bad_actor": Reason.DEFAULT,
}


_VARIANT = {True: "on", False: "off"}


def _is_bool(v: object) -> bool:
    return isinstance(v, bool)


class SignalboxProvider(AbstractProvider):
    """Resolves from a :class:`~signalbox.flags.cache.FlagCache` (default: the process's
    client, :func:`signalbox.flags.configure`, looked up at each resolution)."""

    def __init__(self, cache: FlagCache | None = None) -> None:
        super().__init__()
        self._cache = cache

    def get_metadata(self) -> Metadata:
        return Metadata(name="signalbox")

    def _client(self) -> FlagCache | None:
        if self._cache is not None:
            return self._cache
        from signalbox.flags.runtime import current

        return current()

    def _resolve(
        self,
        key: str,
        default: V,
        context: EvaluationContext | None,
        accept: Callable[[object], bool],
        kind: str,
        res: Resolution | None = None,
    ) -> FlagResolutionDetails[V]:
        try:
            cache = self._cache or self._client()
            if cache is None:
                return FlagResolutionDetails(
                    default,
                    ErrorCode.PROVIDER_NOT_READY,
                    "signalbox.flags.configure() has not been called",
                    Reason.ERROR,
                )
            if res is None:
                res = cache.resolve(key, context.targeting_key if context is not None else None)
            if not res.declared:
                return FlagResolutionDetails(
                    default,
                    ErrorCode.FLAG_NOT_FOUND,
                    f"flag {key!r} is not declared (flags/*.yaml or flags.declare())",
                    Reason.ERROR,
                )
            values = res.values
            value: object = res.value if values is None else values[not res.value]
            if not accept(value):
                shape = "on/off" if values is None else type(values[0]).__name__
                return FlagResolutionDetails(
                    default,
                    ErrorCode.TYPE_MISMATCH,
                    f"flag {key!r} is {shape}, asked as {kind}",
                    Reason.ERROR,
                )
            if kind == "float":
                value = float(value)  # type: ignore[arg-type]  # a number, checked above
            if res.reason == "error":
                return FlagResolutionDetails(
                    default, ErrorCode.GENERAL, f"flag {key!r} could not be evaluated", Reason.ERROR
                )
            return FlagResolutionDetails(
                value,  # type: ignore[arg-type]  # checked by accept()
                reason=_REASONS.get(res.reason, Reason.UNKNOWN),
                variant="on" if res.value else "off",
            )
        except Exception as e:  # never raise to the caller
            return FlagResolutionDetails(default, ErrorCode.GENERAL, str(e), Reason.ERROR)

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        cache = self._cache
        if cache is None:
            return self._resolve(flag_key, default_value, evaluation_context, _is_bool, "boolean")
        try:  # the common case first, without the general path's checks
            actor = None if evaluation_context is None else evaluation_context.targeting_key
            res = cache.resolve(flag_key, actor)
            if res.declared and res.values is None and res.reason != "error":
                return FlagResolutionDetails(
                    res.value, reason=_REASONS[res.reason], variant=_VARIANT[res.value]
                )
        except Exception as e:  # never raise to the caller
            return FlagResolutionDetails(default_value, ErrorCode.GENERAL, str(e), Reason.ERROR)
        return self._resolve(flag_key, default_value, evaluation_context, _is_bool, "boolean", res)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(
            flag_key, default_value, evaluation_context, lambda v: isinstance(v, str), "string"
        )

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(
            flag_key,
            default_value,
            evaluation_context,
            lambda v: isinstance(v, int) and not isinstance(v, bool),
            "integer",
        )

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(
            flag_key,
            default_value,
            evaluation_context,
            lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "float",
        )

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(flag_key, default_value, evaluation_context, lambda v: False, "object")
