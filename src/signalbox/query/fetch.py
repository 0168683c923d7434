"""Read what a query needs from the store: each distinct selector once, for all steps.

A range query over 11,520 steps must not cost 11,520 store round trips, so the tree is
walked first to find every selector and every window it is read with (lookback, range,
offset), and each selector is fetched once over the union of those windows. A selector
under ``@`` is read at that one time; one inside a subquery at the subquery's own inner
steps (:mod:`signalbox.query.subquery`), so the walk carries the step grid each node is
evaluated on. When the store answers with rollup buckets coarser than a window, the fetch
is widened so the engine's widened windows (see :mod:`signalbox.query.engine`) have their
data.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from math import gcd
from operator import lt

from signalbox.exceptions import StoreError
from signalbox.metrics.samples import Matcher, format_series
from signalbox.metrics.store import MetricReader, SeriesPoints
from signalbox.query.ast import Call, Expr, MatrixSelector, Subquery, VectorSelector
from signalbox.query.functions import FUNCTIONS, STATISTICS_READ
from signalbox.query.subquery import Grid, inner_grid

FetchKey = tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True)
class _Use:
    """One place a selector is read: its offset, window width and rollup-bucket need, at
    the steps ``first``, ``first + step``, ... ``last`` (``step`` 0: at ``first`` only)."""

    offset_ms: int
    width_ms: int
    buckets: int
    stats: frozenset[str]  # the bucket statistics the function around it reads (STATISTICS_READ)
    instant: bool
    first: int
    last: int
    step: int


def fetch_key(matchers: tuple[Matcher, ...]) -> FetchKey:
    """Selectors with the same matchers (in any order) share one fetch."""
    return tuple(sorted((m.label, m.op, m.value) for m in matchers))


def _uses(
    tree: Expr, lookback_ms: int, grid: Grid
) -> dict[FetchKey, tuple[tuple[Matcher, ...], list[_Use]]]:
    uses: dict[FetchKey, tuple[tuple[Matcher, ...], list[_Use]]] = {}

    def note(
        sel: VectorSelector,
        g: Grid,
        width: int,
        buckets: int,
        stats: frozenset[str],
        instant: bool,
    ) -> None:
        matchers = sel.all_matchers()
        entry = uses.setdefault(fetch_key(matchers), (matchers, []))
        at = g.pinned(sel.at)
        use = _Use(sel.offset_ms, width, buckets, stats, instant, at.first, at.last, at.step)
        entry[1].append(use)

    # an explicit stack: a deep tree must not exhaust Python's recursion here
    none: frozenset[str] = frozenset()
    stack: list[tuple[Expr, Grid, int, frozenset[str]]] = [(tree, grid, 1, none)]
    while stack:
        e, g, buckets, stats = stack.pop()
        if isinstance(e, MatrixSelector):
            note(e.selector, g, e.range_ms, buckets, stats, False)
        elif isinstance(e, VectorSelector):
            note(e, g, lookback_ms, 1, none, True)
        elif isinstance(e, Subquery):
            inner = inner_grid(e, g)
            if inner is not None:
                stack.append((e.expr, inner, 1, none))
        elif isinstance(e, Call):
            sig = FUNCTIONS[e.func]
            read = STATISTICS_READ.get(e.func, none)  # more than each bucket's last value
            stack.extend((a, g, sig.rollup_buckets, read) for a in e.args)
        else:
            stack.extend((c, g, 1, none) for c in e.children())
    return uses


def fetch(
    store: MetricReader,
    tree: Expr,
    steps: list[int],
    step_ms: int,
    *,
    lookback_ms: int,
    probe_ms: int,
    start_ms: int | None = None,
    end_ms: int | None = None,
    skip: frozenset[FetchKey] = frozenset(),
) -> dict[FetchKey, list[SeriesPoints]]:
    """Series per selector covering every window any step reads.

    ``probe_ms``: when a selector's window holds nothing, look that much further back
    once, since coarse rollup buckets may sit just outside a narrow window (0: never).
    ``start_ms``/``end_ms``: the query's (``@ start()``, ``@ end()``); the first and last
    step unless given. ``skip``: selectors read another way (as columns, see
    :mod:`signalbox.query.columnar`).
    """
    grid = Grid(
        steps[0],
        steps[-1],
        step_ms if len(steps) > 1 else 0,
        steps[0] if start_ms is None else start_ms,
        steps[-1] if end_ms is None else end_ms,
    )
    data: dict[FetchKey, list[SeriesPoints]] = {}
    for key, (matchers, uses) in _uses(tree, lookback_ms, grid).items():
        if key in skip:
            continue
        start = min(u.first - u.offset_ms - u.width_ms for u in uses)
        end = max(u.last - u.offset_ms for u in uses)
        wanted = frozenset().union(*(u.stats for u in uses))
        agg: bool | frozenset[str] = wanted if wanted else False
        align = _alignment(uses)
        res_ms = bucket_ms(store, start, step_ms, align)
        if res_ms:  # widened up front: one read, not a read and then a wider one
            start = min(start, min(u.first - u.offset_ms - u.buckets * res_ms for u in uses))
        got = store.select(matchers, start, end, step_ms=step_ms, aggregates=agg, align_ms=align)
        if not got and probe_ms:
            start -= probe_ms
            got = store.select(
                matchers, start, end, step_ms=step_ms, aggregates=agg, align_ms=align
            )
        res_ms = max((sp.resolution for sp in got), default=0) * 1000
        if res_ms:
            need = min(u.first - u.offset_ms - max(u.width_ms, u.buckets * res_ms) for u in uses)
            if need < start:
                got = store.select(
                    matchers, need, end, step_ms=step_ms, aggregates=agg, align_ms=align
                )
        for sp in got:
            _check(sp)
        data[key] = got
    return data


def bucket_ms(store: MetricReader, start_ms: int, step_ms: int, align_ms: int) -> int:
    """The bucket length (ms) of the level ``store`` will read a window starting at
    ``start_ms`` from (0: raw, or a store that does not say), so that a read widened for
    functions that need whole buckets is one read, not a read, a look at its resolution,
    and a second, wider read of the same rows (twice the work for a 30-day ``rate``)."""
    choose = getattr(store, "choose_level", None)
    if choose is None:
        return 0
    return int(choose(start_ms, step_ms, align_ms=align_ms).tier) * 1000


def _alignment(uses: list[_Use]) -> int:
    """The largest span every window edge of these uses is a multiple of: a rollup tier
    whose bucket length divides it answers every window from whole buckets, exactly.

    A window is ``(end - width, end]`` with ``end = step - offset`` for each step of the
    use's grid (a subquery's inner steps are their own grid, an ``@`` pins all to one
    time); an instant selector's lookback start needs no alignment (the buckets' own
    sample times decide it).
    """
    align = 0
    for u in uses:
        align = gcd(align, u.step, u.first - u.offset_ms)
        if not u.instant:
            align = gcd(align, u.width_ms)
    return align


def _check(sp: SeriesPoints) -> None:
    """Bisecting unsorted points would give wrong answers silently; refuse them loudly."""
    ts = sp.timestamps
    n = len(ts)
    if any(len(getattr(sp, c)) != n for c in sp.columns()):
        raise StoreError(
            f"store returned misaligned points for {format_series(sp.name, sp.labels)}"
        )
    if not all(map(lt, ts, islice(ts, 1, None))):
        raise StoreError(
            f"store returned points out of time order (or repeated) for "
            f"{format_series(sp.name, sp.labels)}; select() must return them oldest first"
        )
