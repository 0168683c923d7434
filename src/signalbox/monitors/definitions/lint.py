"""Lint of one monitor: a composed YAML mapping -> a :class:`Monitor`, or every error in it.

Reviewers read monitors like code, so lint must point at the exact line and say what was
expected. Each value is checked where it sits (see :mod:`signalbox.monitors.definitions.yamlnodes`),
and checking goes on after an error so one pass reports everything wrong with a monitor.
Checks across monitors and files (duplicate names, ``depends_on``) are
:mod:`signalbox.monitors.definitions.load`'s.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from signalbox.metrics.samples import LABEL_NAME
from signalbox.monitors.definitions.lint_checks import KINDS, CheckLinter
from signalbox.monitors.definitions.model import (
    NAME_RE,
    NO_DATA_CHOICES,
    FlagAction,
    Flapping,
    Monitor,
    State,
)
from signalbox.monitors.definitions.yamlnodes import line_of, show, suggest


@dataclass(frozen=True, slots=True)
class LintError:
    """One problem in a monitor file: where (``line`` is 1-based, 0 = whole file) and what."""

    file: str
    line: int
    monitor: str | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = f" {self.monitor}:" if self.monitor else ""
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{who}{key} {self.message}"


KNOWN_KEYS = (
    "name", "description", "owner", "runbook", "notify", "depends_on", "on_critical",
    "on_warning", "on_recover", "labels", "repeat", "for", "no_data", "flapping",
    *KINDS, "warning", "critical", "recover", "timeout",
)  # fmt: skip
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%\Z")


@dataclass
class LintedItem:
    """One list item of a file, with what the cross-file checks need.

    Filled in while its monitor is linted and never changed afterwards: a
    :class:`~signalbox.monitors.definitions.load.LoadCache` hands the same item to every load.
    """

    file: str
    line: int
    name: str | None
    name_line: int
    depends: list[tuple[str, int]] = field(default_factory=list)
    monitor: Monitor | None = None
    bad: bool = False


class MonitorLinter(CheckLinter):
    """Validates one monitor mapping, recording every error it finds."""

    def __init__(
        self,
        file: str,
        node: MappingNode,
        notifiers: Collection[str] | None,
        errors: list[LintError],
    ) -> None:
        self.file, self.node, self.notifiers, self.errors = file, node, notifiers, errors
        self.bad = False
        self.name: str | None = None

    def err(self, where: Node | int, key: str | None, message: str) -> None:
        self.errors.append(LintError(self.file, line_of(where), self.name, key, message))
        self.bad = True

    # -- the monitor ----------------------------------------------------------------------

    def parse(self) -> LintedItem:
        for k, v in self.node.value:  # the name first, so every message can carry it
            if isinstance(k, ScalarNode) and k.value == "name" and isinstance(v, ScalarNode):
                self.name = str(v.value)
                break
        e = self.entries(self.node, KNOWN_KEYS)
        item = LintedItem(self.file, line_of(self.node), None, line_of(self.node))
        if "name" not in e:
            self.err(
                self.node,
                "name",
                "missing 'name': every monitor needs a unique name like image_processing_slow",
            )
        else:
            name = self.string("name", e["name"][1], "a name")
            if name is not None and not NAME_RE.match(name):
                self.err(
                    e["name"][1],
                    "name",
                    f"bad name {name!r}: expected lowercase letters, digits, '_', '.' or '-', like image_processing_slow",
                )
            item.name, item.name_line = self.name, line_of(e["name"][0])
        if "description" not in e:
            self.err(
                self.node,
                "description",
                "missing 'description': say why this monitor exists (what breaks, for whom)",
            )
        description = (
            self.string(
                "description", e["description"][1], "a sentence saying why this monitor exists"
            )
            if "description" in e
            else None
        )

        check = self.check(e)
        common = self.common(e, item)
        if not self.bad and check is not None and description is not None and item.name is not None:
            item.monitor = Monitor(
                name=item.name, description=description.strip(), check=check,
                file=self.file, line=item.line, **common,
            )  # fmt: skip
        item.bad = self.bad
        return item

    def flag_action(self, key: str, node: Node) -> FlagAction | None:
        m = self.mapping(key, node, ("flag", "set"))
        if not isinstance(node, MappingNode):
            return None
        flag = setting = None
        for part in ("flag", "set"):
            if part not in m:
                self.err(
                    node,
                    f"{key}.{part}",
                    f"missing '{part}' in {key}, like {key}: {{flag: photo_uploads, set: \"off\"}}",
                )
        if "flag" in m:
            flag = self.string(f"{key}.flag", m["flag"][1], "a flag name")
        if "set" in m:
            raw = self.scalar(f"{key}.set", m["set"][1])
            if isinstance(raw, bool):  # YAML 1.1 reads unquoted on/off as booleans
                raw = "on" if raw else "off"
            pct = _PERCENT.match(raw) if isinstance(raw, str) else None
            if isinstance(raw, str) and (
                raw in ("on", "off") or (pct and float(pct.group(1)) <= 100)
            ):
                setting = raw
            else:
                self.err(
                    m["set"][1],
                    f"{key}.set",
                    f'bad set value {show(m["set"][1], raw)}: expected "on", "off" or a percentage from 0% to 100% like "25%"',
                )
        line = line_of(m["flag"][1]) if "flag" in m else 0
        return FlagAction(flag, setting, line) if flag and setting else None

    def common(self, e: dict[str, tuple[Node, Node]], item: LintedItem) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "owner" in e:
            out["owner"] = self.string("owner", e["owner"][1], "a team or person")
        if "runbook" in e:
            url = self.string("runbook", e["runbook"][1], "a URL")
            if url is not None and not url.startswith(("http://", "https://")):
                self.err(
                    e["runbook"][1],
                    "runbook",
                    f"expected a URL starting with http:// or https://, got {url!r}",
                )
            out["runbook"] = url
        if "notify" in e:
            notify = self.names("notify", e["notify"][1])
            if self.notifiers is not None:
                known = sorted(self.notifiers)
                for n, line in notify:
                    if n not in self.notifiers:
                        choices = (
                            f"expected one of {', '.join(known)}"
                            if known
                            else "no notifiers are configured"
                        )
                        self.err(
                            line,
                            "notify",
                            f"unknown notifier '{n}'{suggest(n, known)}: {choices} (in signalbox.toml)",
                        )
            out["notify"] = tuple(n for n, _ in notify)
        if "depends_on" in e:
            item.depends = self.names("depends_on", e["depends_on"][1])
            out["depends_on"] = tuple(n for n, _ in item.depends)
        for key in ("on_critical", "on_warning", "on_recover"):
            if key in e:
                out[key] = self.flag_action(key, e[key][1])
        if "labels" in e:
            out["labels"] = self.labels(e["labels"][1])
        if "repeat" in e:
            out["repeat_seconds"] = self.duration("repeat", e["repeat"][1])
        if "for" in e:
            out["for_seconds"] = self.duration("for", e["for"][1], zero_ok=True)
        if "no_data" in e:
            value = self.scalar("no_data", e["no_data"][1])
            if isinstance(value, str) and value.lower() in NO_DATA_CHOICES:
                out["no_data"] = State(value.upper())
            else:
                self.err(
                    e["no_data"][1],
                    "no_data",
                    f"expected one of {', '.join(NO_DATA_CHOICES)}, got {show(e['no_data'][1], value)}",
                )
        if "flapping" in e:
            out["flapping"] = self.flapping(e["flapping"][1])
        return out

    def labels(self, node: Node) -> tuple[tuple[str, str], ...]:
        m = node.value if isinstance(node, MappingNode) else None
        if m is None:
            self.err(
                node, "labels", f"expected a mapping of label names to values, got {show(node)}"
            )
            return ()
        pairs = {}
        for k, v in self.entries(
            node, [str(k.value) for k, _ in m if isinstance(k, ScalarNode)], "labels."
        ).items():
            if not LABEL_NAME.match(k) or k.startswith("__"):
                self.err(
                    v[0],
                    f"labels.{k}",
                    f"bad label name {k!r}: expected letters, digits and '_', not starting with a digit or '__'",
                )
                continue
            value = self.scalar(f"labels.{k}", v[1]) if isinstance(v[1], ScalarNode) else None
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                pairs[k] = str(v[1].value)
            else:
                self.err(v[1], f"labels.{k}", f"expected a text value, got {show(v[1], value)}")
        return tuple(sorted(pairs.items()))

    def flapping(self, node: Node) -> Flapping | None:
        if isinstance(node, ScalarNode):
            value = self.scalar("flapping", node)
            if isinstance(value, bool):
                return Flapping(enabled=value)
            self.err(
                node,
                "flapping",
                f"expected false or a mapping like {{low: 20, high: 30}}, got {show(node, value)}",
            )
            return None
        m = self.mapping("flapping", node, ("low", "high"))
        got = {k: self.number(f"flapping.{k}", m[k][1]) for k in m}
        low, high = got.get("low", 20.0), got.get("high", 30.0)
        for k, v in (("low", low), ("high", high)):
            if v is not None and not 0 <= v <= 100:
                self.err(m[k][1], f"flapping.{k}", f"expected a percent from 0 to 100, got {v:g}")
                return None
        if low is None or high is None:
            return None
        if low >= high:
            where = m["low"][1] if "low" in m else node
            self.err(where, "flapping.low", f"low ({low:g}%) must be below high ({high:g}%)")
            return None
        return Flapping(low, high)


def lint_monitor(
    file: str, node: MappingNode, notifiers: Collection[str] | None, errors: list[LintError]
) -> LintedItem:
    """Validate one monitor mapping of ``file``, appending every error found to ``errors``."""
    return MonitorLinter(file, node, notifiers, errors).parse()
