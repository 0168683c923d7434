"""``label_replace`` and ``label_join``: rewrite a label of every series, as Prometheus does.

Prometheus compiles ``label_replace``'s pattern as ``^(?s:regex)$`` with Go's RE2-family
engine and searches the source label's value with it (so the pattern is fully anchored and
``.`` matches a newline), then expands ``$1``/``${name}`` with Go's
``Regexp.ExpandString``. Capture groups are needed here, which the label-matcher module
(:mod:`signalbox.metrics.labelregex`) compiles away, so this uses the public ``re2`` API;
the compiled pattern is cached, so it is compiled once however many series and steps a
query has. An empty result deletes the label, as setting a label to "" does in Prometheus.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2  # type: ignore[import-untyped]

from signalbox.exceptions import QueryError
from signalbox.metrics.samples import LABEL_NAME
from signalbox.query.ast import Expr, StringLiteral, quote
from signalbox.query.values import Metric


class ReplaceRegexError(ValueError):
    """The pattern RE2 refuses; ``message`` is RE2's own words."""


@lru_cache(maxsize=256)
def compile_replace_regex(pattern: str) -> Any:
    """``^(?s:pattern)$`` compiled with RE2, exactly the text Prometheus compiles."""
    wrapped = "^(?s:" + pattern + ")$"
    try:
        return re2.compile(wrapped, _OPTIONS)
    except re2.error as exc:
        said = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(said, bytes):
            said = said.decode("utf-8", "replace")
        raise ReplaceRegexError(str(said).replace(wrapped, pattern)) from None
    except (TypeError, UnicodeEncodeError) as exc:  # a lone surrogate in the pattern
        raise ReplaceRegexError(str(exc)) from None


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print refusals to stderr; we raise them instead
    return options


_OPTIONS = _options()


def check_label_function(name: str, args: list[Expr]) -> None:
    """Refuse a bad destination/source label name or regex while parsing, naming it.

    Prometheus finds these when it evaluates; finding them with the query's position is
    kinder and returns the same 400.
    """
    strings = [a for a in args[1:] if isinstance(a, StringLiteral)]
    dst = strings[0]
    if not LABEL_NAME.fullmatch(dst.value):
        raise QueryError(
            f"invalid destination label name in {name}(): {quote(dst.value)}", dst.pos, "function"
        )
    if name == "label_replace":
        regex = strings[3]
        try:
            compile_replace_regex(regex.value)
        except ReplaceRegexError as exc:
            raise QueryError(
                f"invalid regular expression in label_replace(): {quote(regex.value)} "
                f"(RE2 syntax): {exc}",
                regex.pos,
                "regex",
            ) from None
    else:
        for src in strings[2:]:
            if not LABEL_NAME.fullmatch(src.value):
                raise QueryError(
                    f"invalid source label name in label_join(): {quote(src.value)}",
                    src.pos,
                    "function",
                )


def _with_label(metric: Metric, dst: str, value: str) -> Metric:
    labels = dict(metric)
    if value:
        labels[dst] = value
    else:
        labels.pop(dst, None)
    return tuple(sorted(labels.items()))


def label_replace(metric: Metric, dst: str, replacement: str, src: str, regex: str) -> Metric:
    """The series' labels after ``label_replace``; unchanged when the regex does not match."""
    compiled = compile_replace_regex(regex)
    match = compiled.search(dict(metric).get(src, ""))
    if match is None:
        return metric
    return _with_label(metric, dst, expand(replacement, match, compiled.groupindex))


def label_join(metric: Metric, dst: str, separator: str, srcs: list[str]) -> Metric:
    """The series' labels with ``dst`` set to the source values joined (missing ones "")."""
    labels = dict(metric)
    return _with_label(metric, dst, separator.join(labels.get(s, "") for s in srcs))


def expand(template: str, match: Any, names: dict[str, int]) -> str:
    """Go's ``Regexp.ExpandString``: ``$$`` is ``$``; ``$name``/``${name}`` takes the
    longest run of letters, digits and ``_`` (``$1x`` is the group named "1x", which is
    empty); a group that did not take part, or does not exist, is ""; a malformed ``$``
    is kept as text."""
    out: list[str] = []
    i, n = 0, len(template)
    while i < n:
        j = template.find("$", i)
        if j < 0:
            break
        out.append(template[i:j])
        i = j + 1
        if i < n and template[i] == "$":
            out.append("$")
            i += 1
            continue
        parsed = _extract(template, i)
        if parsed is None:
            out.append("$")
            continue
        name, i = parsed
        group = _group_number(name)
        if group is None:
            group = names.get(name)
        if group is not None and group <= match.re.groups:
            out.append(match.group(group) or "")
    out.append(template[i:])
    return "".join(out)


def _extract(template: str, i: int) -> tuple[str, int] | None:
    """The reference name starting at ``i`` (after a ``$``) and where the text resumes."""
    brace = i < len(template) and template[i] == "{"
    start = i + 1 if brace else i
    k = start
    while k < len(template) and _name_char(template[k]):
        k += 1
    if k == start:
        return None
    if brace:
        if k >= len(template) or template[k] != "}":
            return None
        return template[start:k], k + 1
    return template[start:k], k


def _name_char(ch: str) -> bool:
    return ch.isalpha() or ch.isdecimal() or ch == "_"


def _group_number(name: str) -> int | None:
    """Go: all ASCII digits, below 1e8, no leading zero; otherwise it is a name."""
    if not name.isascii() or not name.isdigit():
        return None
    if len(name) > 1 and name[0] == "0":
        return None
    num = 0
    for ch in name:
        if num >= 100_000_000:
            return None
        num = num * 10 + ord(ch) - 48
    return num
