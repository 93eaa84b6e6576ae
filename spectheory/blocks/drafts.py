r"""Draft structures: what one target call verifies (pure data, validation, draft laws).

A draft structure is a rooted tree of *draft nodes*. Node 0 is the root: the context the target is
called on. Every other node carries one drafted token; its path from the root is the drafted
continuation it proposes. The children :math:`c_1, \dots, c_k` of a node :math:`u` are drafted
jointly from the draft model's conditional :math:`q(\cdot \mid \text{path}(u))` by a token-level
draft scheme, independently across nodes given their paths:

* ``"iid"``: :math:`k` i.i.d. draws (SpecTr, Sun et al. 2023; duplicates allowed);
* ``"wor"``: :math:`k` draws without replacement, child :math:`i` gets the :math:`i`-th draw
  (SpecInfer, Sequoia);
* ``"greedy"``: the top-:math:`k` tokens of :math:`q` in decreasing order, ties broken by the
  smaller token id (EAGLE-2's deterministic expansion). Note that :class:`spectheory.Greedy`, the
  token-level scheme of Hu et al., samples its last draft; this tree scheme does not;
* ``"hub"``: two children drafted by :class:`spectheory.Hub` (SpecHub; :math:`k = 2` only).

:class:`Chain` (one sequence) and :class:`Chains` (``n`` i.i.d. sequences, SpecTr's setting) are
trees of that kind: ``Chains(n, gamma)`` is the root with ``n`` i.i.d. children, each the start of
its own chain, which is exactly the law of ``n`` independent draft sequences. Sequences that share
a prefix form a trie; verifiers merge such nodes where they are allowed to (see
:mod:`spectheory.blocks.verify`).

Draft laws here work on ``float`` arrays and on object arrays of :class:`fractions.Fraction` (exact
enumeration): probabilities are products and quotients, and the mass not yet drawn without
replacement is summed over the remaining tokens, never computed as ``1 - drawn`` (which cancels
next to a dominant token).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Union

import numpy as np

from .._validate import SpecTheoryInputError, check_n

__all__ = [
    "SCHEMES",
    "Chain",
    "Chains",
    "DraftStructure",
    "Tree",
    "as_tree",
    "children_law",
    "sample_children",
]

#: Token-level draft schemes a tree may use for the children of a node.
SCHEMES: tuple[str, ...] = ("iid", "wor", "greedy", "hub")

#: Largest number of draft nodes (excluding the root) a structure may have.
MAX_NODES: int = 4096


def _check_scheme(scheme: Any) -> str:
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise SpecTheoryInputError(
            f"argument 'scheme': expected one of {', '.join(map(repr, SCHEMES))}, got {scheme!r}"
        )
    return scheme


def _check_int(x: Any, name: str, low: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or int(x) < low:
        raise SpecTheoryInputError(f"argument {name!r}: must be an integer >= {low}, got {x!r}")
    return int(x)


@dataclass(frozen=True)
class Tree:
    r"""A fixed draft topology given by a parent array.

    Parameters
    ----------
    parents
        ``parents[0]`` is ``-1`` (node 0 is the root context); for ``i >= 1``,
        ``0 <= parents[i] < i`` (parents come before their children). Children of a node are
        ordered by node id: child :math:`i` of a node receives the :math:`i`-th draw of the scheme.
    scheme
        How the children of a node are drafted from :math:`q(\cdot\mid\text{path})`: one of
        :data:`SCHEMES` (module docstring).

    Examples
    --------
    >>> Tree((-1, 0, 0, 1)).depth          # root with two children, the first with one child
    (0, 1, 1, 2)
    >>> Tree.branching((2, 1)).num_nodes   # 2 children at depth 1, each with 1 child
    4
    """

    parents: tuple[int, ...]
    scheme: str = "iid"

    def __post_init__(self) -> None:
        try:
            par = tuple(int(x) for x in self.parents)
            ok = all(float(x) == int(x) for x in self.parents)
        except (TypeError, ValueError):
            raise SpecTheoryInputError(
                f"argument 'parents': expected a sequence of integers, got {self.parents!r}"
            ) from None
        if not ok or isinstance(self.parents, str):
            raise SpecTheoryInputError(
                f"argument 'parents': expected a sequence of integers, got {self.parents!r}"
            )
        if len(par) == 0 or par[0] != -1:
            raise SpecTheoryInputError(
                f"argument 'parents': parents[0] must be -1 (node 0 is the root), got {par[:1]}"
            )
        for i in range(1, len(par)):
            if not 0 <= par[i] < i:
                raise SpecTheoryInputError(
                    f"argument 'parents': entry {i} is {par[i]}; each node's parent must be an "
                    f"earlier node (0 <= parents[i] < i)"
                )
        if len(par) - 1 > MAX_NODES:
            raise SpecTheoryInputError(
                f"argument 'parents': {len(par) - 1} draft nodes, more than MAX_NODES = {MAX_NODES}"
            )
        object.__setattr__(self, "parents", par)
        _check_scheme(self.scheme)
        if self.scheme == "hub":
            bad = [u for u, c in enumerate(self.children) if len(c) not in (0, 2)]
            if bad:
                raise SpecTheoryInputError(
                    f"argument 'scheme': 'hub' drafts exactly 2 children, node {bad[0]} has "
                    f"{len(self.children[bad[0]])}"
                )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def branching(cls, ks: Sequence[int], scheme: str = "iid") -> Tree:
        r"""The tree in which every node at depth :math:`d` has ``ks[d]`` children
        (:math:`\prod_{j \le d} k_j` nodes at depth :math:`d + 1`)."""
        if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence | np.ndarray):
            raise SpecTheoryInputError(f"argument 'ks': expected a sequence of integers, got {ks!r}")
        k = [_check_int(x, f"ks[{i}]", 1) for i, x in enumerate(ks)]
        total = sum(int(np.prod(k[: d + 1])) for d in range(len(k)))
        if total > MAX_NODES:
            raise SpecTheoryInputError(
                f"argument 'ks': {total} draft nodes, more than MAX_NODES = {MAX_NODES}"
            )
        parents = [-1]
        level = [0]
        for kd in k:
            nxt = []
            for u in level:
                for _ in range(kd):
                    parents.append(u)
                    nxt.append(len(parents) - 1)
            level = nxt
        return cls(tuple(parents), scheme)

    # ------------------------------------------------------------------ derived structure
    @property
    def tree(self) -> Tree:
        return self

    @property
    def num_nodes(self) -> int:
        """Number of drafted tokens (nodes other than the root)."""
        return len(self.parents) - 1

    @cached_property
    def children(self) -> tuple[tuple[int, ...], ...]:
        ch: list[list[int]] = [[] for _ in self.parents]
        for i in range(1, len(self.parents)):
            ch[self.parents[i]].append(i)
        return tuple(tuple(c) for c in ch)

    @cached_property
    def depth(self) -> tuple[int, ...]:
        d = [0] * len(self.parents)
        for i in range(1, len(self.parents)):
            d[i] = d[self.parents[i]] + 1
        return tuple(d)

    @property
    def max_depth(self) -> int:
        """Length of the longest drafted path (:math:`\\gamma` for a chain)."""
        return max(self.depth)

    @cached_property
    def internal(self) -> tuple[int, ...]:
        """Nodes with children, in id order (the order in which drafts are drawn)."""
        return tuple(u for u, c in enumerate(self.children) if c)

    def path(self, tokens: Sequence[int], u: int) -> tuple[int, ...]:
        """The drafted tokens on the path root -> ``u`` of a realisation ``tokens``."""
        out: list[int] = []
        while u > 0:
            out.append(int(tokens[u]))
            u = self.parents[u]
        return tuple(reversed(out))

    def is_chain(self) -> bool:
        return all(len(c) <= 1 for c in self.children)

    def describe(self) -> str:
        return f"Tree({self.num_nodes} nodes, depth {self.max_depth}, scheme {self.scheme!r})"


@dataclass(frozen=True)
class Chain:
    r"""One draft sequence of ``gamma`` tokens, each drafted from :math:`q(\cdot\mid\text{prefix})`
    (Leviathan et al. 2023; Chen et al. 2023)."""

    gamma: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", _check_int(self.gamma, "gamma", 1))
        if self.gamma > MAX_NODES:
            raise SpecTheoryInputError(f"argument 'gamma': more than MAX_NODES = {MAX_NODES}")

    @cached_property
    def tree(self) -> Tree:
        return Tree(tuple(range(-1, self.gamma)), "iid")

    def describe(self) -> str:
        return f"Chain(gamma={self.gamma})"


@dataclass(frozen=True)
class Chains:
    r"""``n`` independent draft sequences of ``gamma`` tokens each (SpecTr, Sun et al. 2023): the
    root has ``n`` i.i.d. children and each child starts its own chain."""

    n: int
    gamma: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", check_n(self.n))
        object.__setattr__(self, "gamma", _check_int(self.gamma, "gamma", 1))
        if self.n * self.gamma > MAX_NODES:
            raise SpecTheoryInputError(
                f"arguments 'n', 'gamma': {self.n * self.gamma} draft nodes, more than MAX_NODES"
            )

    @cached_property
    def tree(self) -> Tree:
        return Tree.branching((self.n,) + (1,) * (self.gamma - 1), "iid")

    def describe(self) -> str:
        return f"Chains(n={self.n}, gamma={self.gamma})"


DraftStructure = Union[Tree, Chain, Chains]  # noqa: UP007 (used at runtime in isinstance)


def as_tree(drafts: Any) -> Tree:
    """The :class:`Tree` of a draft structure (raises a clear error on anything else)."""
    if isinstance(drafts, (Tree, Chain, Chains)):
        return drafts.tree
    raise SpecTheoryInputError(
        f"argument 'drafts': expected Chain, Chains or Tree, got {type(drafts).__name__}"
    )


# ---------------------------------------------------------------------- draft laws of one node
def _rest(q: Sequence[Any], drawn: Sequence[int]) -> Any:
    """Mass of the tokens not in ``drawn``, summed directly (small first for floats)."""
    taken = set(drawn)
    vals = [q[y] for y in range(len(q)) if y not in taken]
    if vals and isinstance(vals[0], float | np.floating):
        return float(np.sum(np.sort(np.asarray(vals, dtype=np.float64))))
    return sum(vals, start=0 * q[0])


def _top(q: Sequence[Any], k: int) -> tuple[int, ...]:
    order = sorted(range(len(q)), key=lambda y: (-q[y], y))
    return tuple(order[:k])


def children_law(q: Any, k: int, scheme: str) -> Iterator[tuple[tuple[int, ...], Any]]:
    r"""All drafted tuples of ``k`` children with positive probability under ``scheme``, with
    their probabilities (floats, or Fractions when ``q`` holds Fractions).

    ``q`` is a ``(V,)`` distribution. Raises when ``q`` has too few tokens for the scheme.
    """
    V = len(q)
    support = [y for y in range(V) if q[y] > 0]
    if scheme == "iid":
        for t in itertools.product(support, repeat=k):
            pr = q[t[0]]
            for y in t[1:]:
                pr = pr * q[y]
            yield t, pr
    elif scheme == "wor":
        if len(support) < k:
            raise SpecTheoryInputError(
                f"argument 'draft': q has {len(support)} tokens of positive mass, fewer than the "
                f"{k} children drafted without replacement"
            )
        for t in itertools.permutations(support, k):
            pr = q[t[0]]
            for j in range(1, k):
                pr = pr * q[t[j]] / _rest(q, t[:j])
            yield t, pr
    elif scheme == "greedy":
        if k > V:
            raise SpecTheoryInputError(f"argument 'drafts': {k} greedy children but V = {V}")
        yield _top(q, k), 1 + 0 * q[0]
    elif scheme == "hub":
        a = _top(q, 1)[0]
        rest = _rest(q, (a,))
        if not rest > 0:
            raise SpecTheoryInputError("argument 'draft': SpecHub needs mass outside the hub token")
        for y in support:
            if y == a:
                continue
            m = q[y] / rest  # Pr({a, y}); order (x1, x2) as Hub.sample draws it
            yield (a, y), q[a] * m
            yield (y, a), q[y]
    else:  # pragma: no cover - validated at construction
        raise SpecTheoryInputError(f"argument 'scheme': unknown {scheme!r}")


def sample_children(q: np.ndarray, k: int, scheme: str, rng: np.random.Generator) -> tuple[int, ...]:
    """One draw of ``k`` children of a node whose draft conditional is ``q`` (float ``(V,)``)."""
    from ..schemes import IID, Hub, WithoutReplacement

    if scheme == "iid":
        return tuple(int(x) for x in IID(q, k).sample(rng))
    if scheme == "wor":
        return tuple(int(x) for x in WithoutReplacement(q, k).sample(rng))
    if scheme == "greedy":
        return _top(q, k)
    if scheme == "hub":
        return tuple(int(x) for x in Hub(q).sample(rng))
    raise SpecTheoryInputError(f"argument 'scheme': unknown {scheme!r}")  # pragma: no cover

