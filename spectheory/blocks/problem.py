r"""One block-level problem: a target, a draft, a draft structure and a context.

:class:`BlockProblem` caches the two models' conditionals by path (the drafted tokens after the
context) and validates each one once. Conditionals may be float arrays or object arrays of
:class:`fractions.Fraction` (then every exact quantity downstream stays a Fraction).

A *realisation* of the draft structure is a tuple ``tokens`` of length ``num_nodes + 1``:
``tokens[0] = -1`` (the root) and ``tokens[u]`` the token drafted at node ``u``.
:meth:`BlockProblem.realizations` enumerates all realisations with positive probability;
:meth:`BlockProblem.sample` draws one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from .._validate import SpecTheoryInputError, as_distribution
from .drafts import Tree, as_tree, children_law, sample_children

__all__ = ["MAX_REALIZATIONS", "BlockProblem", "Model", "as_conditional"]

#: A conditional next-token model: context (tuple of token ids) -> distribution (V,).
Model = Callable[[tuple[int, ...]], Any]

#: Largest number of draft realisations an exact computation may enumerate.
MAX_REALIZATIONS: int = 400_000


def as_conditional(x: Any, name: str) -> np.ndarray:
    """Validate one conditional: float64 ``(V,)``, or an object array when it holds Fractions
    (then it must sum to exactly 1)."""
    arr = np.asarray(x, dtype=object) if _is_exact(x) else None
    if arr is None:
        return as_distribution(x, name, allow_batch=False)
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise SpecTheoryInputError(f"argument {name!r}: expected shape (V,), got {arr.shape}")
    vals = [Fraction(v) for v in arr]
    for i, v in enumerate(vals):
        if v < 0:
            raise SpecTheoryInputError(f"argument {name!r}: entry {i} is negative ({v})")
    if sum(vals) != 1:
        raise SpecTheoryInputError(f"argument {name!r}: Fractions sum to {sum(vals)}, not 1")
    out = np.empty(len(vals), dtype=object)
    out[:] = vals
    return out


def _is_exact(x: Any) -> bool:
    if isinstance(x, np.ndarray):
        return x.dtype == object and x.size > 0 and isinstance(x.flat[0], Fraction | int)
    if isinstance(x, list | tuple) and x:
        return all(isinstance(v, Fraction | int) for v in x) and any(
            isinstance(v, Fraction) for v in x
        )
    return False


class BlockProblem:
    r"""Target :math:`p`, draft :math:`q`, a draft structure and a starting context.

    Parameters
    ----------
    target, draft
        Conditional models: ``model(context_tuple) -> (V,)`` distribution.
    drafts
        :class:`~spectheory.blocks.Chain`, :class:`~spectheory.blocks.Chains` or
        :class:`~spectheory.blocks.Tree`.
    context
        Token ids before the block.
    """

    def __init__(self, target: Model, draft: Model, drafts: Any, context: Sequence[int] = ()):
        if not callable(target):
            raise SpecTheoryInputError("argument 'target': expected a callable context -> (V,)")
        if not callable(draft):
            raise SpecTheoryInputError("argument 'draft': expected a callable context -> (V,)")
        self.target = target
        self.draft = draft
        self.drafts = drafts
        self.tree: Tree = as_tree(drafts)
        try:
            self.context: tuple[int, ...] = tuple(int(t) for t in context)
        except (TypeError, ValueError):
            raise SpecTheoryInputError(
                f"argument 'context': expected a sequence of token ids, got {context!r}"
            ) from None
        self._p: dict[tuple[int, ...], np.ndarray] = {}
        self._q: dict[tuple[int, ...], np.ndarray] = {}
        self.V = int(self.p(()).shape[0])
        self.exact = self.p(()).dtype == object

    def p(self, path: tuple[int, ...]) -> np.ndarray:
        """Target conditional after ``context + path``."""
        out = self._p.get(path)
        if out is None:
            h = self.context + path
            out = as_conditional(self.target(h), f"target{h}")
            if self._p and out.shape[0] != self.V:
                raise SpecTheoryInputError(f"argument 'target': V changes at context {h}")
            self._p[path] = out
        return out

    def q(self, path: tuple[int, ...]) -> np.ndarray:
        """Draft conditional after ``context + path``."""
        out = self._q.get(path)
        if out is None:
            h = self.context + path
            out = as_conditional(self.draft(h), f"draft{h}")
            if out.shape[0] != self.V:
                raise SpecTheoryInputError(
                    f"argument 'draft': at context {h} draft V = {out.shape[0]} differs from "
                    f"target V = {self.V}"
                )
            if (out.dtype == object) != self.exact:
                raise SpecTheoryInputError(
                    "arguments 'target', 'draft': mix exact Fractions and floats; give both as "
                    "Fractions or both as floats"
                )
            self._q[path] = out
        return out

    # ------------------------------------------------------------------ draft realisations
    def realizations(self, limit: int = MAX_REALIZATIONS) -> Iterator[tuple[tuple[int, ...], Any]]:
        """All realisations ``(tokens, probability)`` with positive probability.

        Raises a :class:`ValueError` once more than ``limit`` have been produced (exact block
        quantities are for small vocabularies and trees; use ``method="mc"``)."""
        tree = self.tree
        bound = self.count_bound()
        if bound > limit:
            raise SpecTheoryInputError(
                f"argument 'drafts': up to {bound:.3g} draft realisations for {tree.describe()} at "
                f"V = {self.V}, more than {limit}; exact enumeration is for small vocabularies and "
                "trees, use method='mc'"
            )
        count = [0]
        tokens = [-1] * (tree.num_nodes + 1)
        internal = tree.internal

        def rec(i: int, prob: Any) -> Iterator[tuple[tuple[int, ...], Any]]:
            if i == len(internal):
                count[0] += 1
                if count[0] > limit:
                    raise SpecTheoryInputError(
                        f"argument 'drafts': more than {limit} draft realisations for "
                        f"{tree.describe()} at V = {self.V}; exact enumeration is for small "
                        "vocabularies and trees, use method='mc'"
                    )
                yield tuple(tokens), prob
                return
            u = internal[i]
            ch = tree.children[u]
            q = self.q(tree.path(tokens, u))
            for tup, pr in children_law(q, len(ch), tree.scheme):
                for c, y in zip(ch, tup, strict=True):
                    tokens[c] = y
                yield from rec(i + 1, prob * pr)

        one = Fraction(1) if self.exact else 1.0
        yield from rec(0, one)

    def count_bound(self) -> float:
        """Upper bound on the number of realisations (every token of the vocabulary drafted with
        positive probability)."""
        V = self.V
        per = {"iid": lambda k: float(V) ** k, "wor": lambda k: float(math.perm(V, min(k, V))),
               "greedy": lambda k: 1.0, "hub": lambda k: 2.0 * V}[self.tree.scheme]
        return math.prod(per(len(self.tree.children[u])) for u in self.tree.internal)

    def sample(self, rng: np.random.Generator) -> tuple[int, ...]:
        """One realisation drawn from the draft structure's law."""
        tree = self.tree
        tokens = [-1] * (tree.num_nodes + 1)
        for u in tree.internal:
            ch = tree.children[u]
            q = self.q(tree.path(tokens, u))
            qf = q.astype(np.float64) if q.dtype == object else q
            for c, y in zip(ch, sample_children(qf, len(ch), tree.scheme, rng), strict=True):
                tokens[c] = int(y)
        return tuple(tokens)
