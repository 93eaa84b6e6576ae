r"""Conditional next-token models for block-level work: exact tabular models and wrappers.

A conditional model is a callable ``context tuple -> (V,)`` distribution. This module ships:

* :class:`Markov`: an order-1 Markov model from arrays (``initial`` for the empty context,
  ``transition[last token]`` otherwise);
* :class:`Tabular`: a table of conditionals by context, with back-off to the longest stored
  suffix; :meth:`Tabular.random` draws random tables for tests and benchmarks;
* :class:`Cached`: memoises any conditional model by context;
* :func:`lumped`: a pair of large-vocabulary models seen through ``K`` tokens (the target's
  top ``K - 1`` at each context plus one lumped "other" token), so that exact block quantities
  and bounds can be computed on real model pairs.

Tables may hold floats or :class:`fractions.Fraction` (exact enumeration then stays exact).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from .._validate import SpecTheoryInputError
from .problem import as_conditional

__all__ = ["Cached", "Markov", "Tabular", "lumped", "random_pair"]


def _table_row(x: Any, name: str) -> np.ndarray:
    return as_conditional(x, name)


class Markov:
    r"""Order-1 Markov model: :math:`p(\cdot \mid h) = T[h_{-1}]`, and ``initial`` for
    :math:`h = ()`.

    Parameters
    ----------
    initial
        ``(V,)`` law of the first token.
    transition
        ``(V, V)``: row ``a`` is the law of the next token after ``a``.
    """

    def __init__(self, initial: Any, transition: Any) -> None:
        self.initial = _table_row(initial, "initial")
        V = self.initial.shape[0]
        rows = list(transition)
        if len(rows) != V:
            raise SpecTheoryInputError(
                f"argument 'transition': expected {V} rows (V = {V}), got {len(rows)}"
            )
        self.transition = [_table_row(r, f"transition[{a}]") for a, r in enumerate(rows)]
        for a, r in enumerate(self.transition):
            if r.shape[0] != V:
                raise SpecTheoryInputError(
                    f"argument 'transition', row {a}: length {r.shape[0]}, expected V = {V}"
                )
        self.V = V

    def __call__(self, context: tuple[int, ...]) -> np.ndarray:
        if not context:
            return self.initial
        a = int(context[-1])
        if not 0 <= a < self.V:
            raise SpecTheoryInputError(f"argument 'context': token {a} outside 0..{self.V - 1}")
        return self.transition[a]

    def __repr__(self) -> str:
        return f"Markov(V={self.V})"


class Tabular:
    r"""Conditionals stored by context, with back-off: the law after context :math:`h` is the
    entry of the longest suffix of :math:`h` in the table (the empty context must be present).

    Parameters
    ----------
    table
        Mapping from context tuples to ``(V,)`` laws.
    """

    def __init__(self, table: Mapping[tuple[int, ...], Any]) -> None:
        if not isinstance(table, Mapping) or () not in table:
            raise SpecTheoryInputError(
                "argument 'table': expected a mapping of context tuples that contains ()"
            )
        self.table = {tuple(int(t) for t in k): _table_row(v, f"table[{k}]") for k, v in table.items()}
        self.V = self.table[()].shape[0]
        for k, v in self.table.items():
            if v.shape[0] != self.V:
                raise SpecTheoryInputError(
                    f"argument 'table', context {k}: length {v.shape[0]}, expected V = {self.V}"
                )
        self.max_len = max(len(k) for k in self.table)

    def __call__(self, context: tuple[int, ...]) -> np.ndarray:
        h = tuple(context)
        for start in range(max(0, len(h) - self.max_len), len(h) + 1):
            row = self.table.get(h[start:])
            if row is not None:
                return row
        return self.table[()]  # pragma: no cover - () is always present

    @classmethod
    def random(
        cls,
        V: int,
        depth: int,
        rng: np.random.Generator,
        *,
        concentration: float = 1.0,
        exact: bool = False,
        denominator: int = 12,
    ) -> Tabular:
        r"""A random table of conditionals for every context of length ``< depth`` over ``V``
        tokens, each row Dirichlet(``concentration``). With ``exact=True`` rows are Fractions
        with the given ``denominator`` (rounded Dirichlet draws; zeros are possible)."""
        table: dict[tuple[int, ...], Any] = {}
        for d in range(depth):
            for h in np.ndindex(*([V] * d)):
                table[tuple(int(t) for t in h)] = _random_row(V, rng, concentration, exact, denominator)
        return cls(table)

    def __repr__(self) -> str:
        return f"Tabular(V={self.V}, contexts={len(self.table)})"


def _random_row(V: int, rng: np.random.Generator, alpha: float, exact: bool, den: int) -> Any:
    w = rng.dirichlet(np.full(V, alpha))
    if not exact:
        return w
    counts = np.floor(w * den).astype(int)
    rest = den - int(counts.sum())
    for i in np.argsort(-(w * den - counts))[:rest]:
        counts[i] += 1
    return [Fraction(int(c), den) for c in counts]


def random_pair(
    V: int, depth: int, rng: np.random.Generator, *, concentration: float = 1.0,
    exact: bool = False, denominator: int = 12,
) -> tuple[Tabular, Tabular]:
    """Independent random target and draft tables (:meth:`Tabular.random`)."""
    kw = {"concentration": concentration, "exact": exact, "denominator": denominator}
    return Tabular.random(V, depth, rng, **kw), Tabular.random(V, depth, rng, **kw)


class Cached:
    """Memoise a conditional model by context (each context is computed once)."""

    def __init__(self, model: Callable[[tuple[int, ...]], Any], maxsize: int | None = None) -> None:
        if not callable(model):
            raise SpecTheoryInputError("argument 'model': expected a callable context -> (V,)")
        self.model = model
        self.maxsize = maxsize
        self._cache: dict[tuple[int, ...], Any] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, context: Sequence[int]) -> Any:
        h = tuple(int(t) for t in context)
        out = self._cache.get(h)
        if out is not None:
            self.hits += 1
            return out
        self.misses += 1
        out = self.model(h)
        if self.maxsize is not None and len(self._cache) >= self.maxsize:
            self._cache.pop(next(iter(self._cache)))
        self._cache[h] = out
        return out


def lumped(
    target: Callable[[tuple[int, ...]], Any],
    draft: Callable[[tuple[int, ...]], Any],
    K: int,
    *,
    context: Sequence[int] = (),
) -> tuple[Callable[[tuple[int, ...]], np.ndarray], Callable[[tuple[int, ...]], np.ndarray]]:
    r"""Coarse-grain a target/draft pair to ``K`` tokens, context by context.

    At each (real) context the reduced token :math:`j < K - 1` is the target's :math:`(j+1)`-th
    most likely token (ties by smaller id) and token :math:`K - 1` lumps all the others (summed
    directly, never as :math:`1 - \text{top}`); both models are read through the same map, so
    the reduced conditionals are exact lumpings of :math:`p` and :math:`q`. Continuing after the
    lumped token follows its most likely member under the target. Reduced contexts are given
    relative to ``context`` (the real prompt).

    A lossless verifier of the reduced pair is not one of the real pair, and lumping merges tokens
    a real verifier would tell apart, so reduced values describe the coarse-grained problem, not
    the real one; they give exact block-level numbers on distributions shaped by a real pair.
    """
    K = int(K)
    if K < 2:
        raise SpecTheoryInputError(f"argument 'K': must be an integer >= 2, got {K!r}")
    prompt = tuple(int(t) for t in context)
    real: dict[tuple[int, ...], tuple[int, ...]] = {(): prompt}
    maps: dict[tuple[int, ...], tuple[np.ndarray, int]] = {}

    def real_context(h: tuple[int, ...]) -> tuple[int, ...]:
        if h not in real:
            parent = real_context(h[:-1])
            top, other = mapping(h[:-1])
            j = int(h[-1])
            if not 0 <= j < K:
                raise SpecTheoryInputError(f"argument 'context': token {j} outside 0..{K - 1}")
            real[h] = (*parent, int(top[j]) if j < K - 1 else other)
        return real[h]

    def mapping(h: tuple[int, ...]) -> tuple[np.ndarray, int]:
        if h not in maps:
            p = np.asarray(target(real_context(h)), dtype=np.float64)
            order = np.lexsort((np.arange(p.shape[0]), -p))
            maps[h] = (order[: K - 1], int(order[K - 1]) if p.shape[0] >= K else int(order[-1]))
        return maps[h]

    def reduce(model: Callable[[tuple[int, ...]], Any], h: tuple[int, ...]) -> np.ndarray:
        top, _ = mapping(h)
        x = np.asarray(model(real_context(h)), dtype=np.float64)
        rest = np.ones(x.shape[0], dtype=bool)
        rest[top] = False
        out = np.empty(K)
        out[: K - 1] = x[top]
        out[K - 1] = float(np.sum(np.sort(x[rest])))
        return out / math.fsum(out)  # the real row's own rounding only

    def t(h: tuple[int, ...]) -> np.ndarray:
        return reduce(target, tuple(h))

    def d(h: tuple[int, ...]) -> np.ndarray:
        return reduce(draft, tuple(h))

    return t, d
