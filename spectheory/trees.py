r"""Which draft tree to deploy: Sequoia's dynamic program, greedy baselines, acceptance vectors and
a cost model.

The positional model (Sequoia, Chen et al., arXiv 2402.12374)
-------------------------------------------------------------
``acceptance[k-1]`` is :math:`a_k`, the chance that the :math:`k`-th child of a node is accepted
given that the first :math:`k-1` were rejected. The chance that child :math:`k` is the accepted one
is :math:`f_k = a_k \prod_{j<k}(1-a_j)`, and the model assumes the same vector at every node, so a
tree :math:`T` (children ordered as they are drafted) accepts in expectation

.. math:: E(T) = \sum_{v \ne \text{root}} \prod_{u \in \text{path}(v)} f_{\text{pos}(u)}

draft tokens per target call (the bonus token not counted). :func:`sequoia_tree` maximises
:math:`E` over trees of at most ``budget`` nodes exactly: a subtree hung at child position
:math:`k` with :math:`s` nodes contributes :math:`f_k (1 + H(s-1))`, where :math:`H(m)` is the
best value of the nodes below a node, and the children positions are filled left to right by a
max-plus recursion over (position, nodes left), :math:`O(K N^2)` for :math:`K` positions
(vectorised; ``budget = 1024`` takes well under a second). A depth limit adds one dimension
(:func:`sequoia_table`, used by the cost model).

When the model is exact. For a *context-free* pair (the same :math:`p, q` after every prefix),
children drafted without replacement (tree scheme ``"wor"``) and RRS without replacement
(``"rrs_wor"``), child :math:`k` is accepted with probability :math:`f_k = F(k) - F(k-1)`, where
:math:`F(k)` is the acceptance of ``rrs_wor`` with :math:`k` drafts: the first :math:`k` draws of a
node with more children are a without-replacement draw of :math:`k`, and the rule verifies them in
order. Below an accepted child the pair is again :math:`(p, q)`, so every node sees the same vector
and :math:`E(T)` is the exact expected accepted length (checked against
:func:`spectheory.blocks.block_acceptance` in the tests). The same holds for the ``"greedy"``
scheme (top-:math:`k` children, accept when :math:`Y \sim p` is among them) with
:math:`f_k = p(\text{k-th most likely draft token})` and for ``"iid"`` children with RRS with
replacement when siblings are not merged. On real models the vector changes with the context and
:math:`E(T)` built from an average vector is Sequoia's approximation.

The :math:`\alpha^*`-implied vector. For any lossless token-level verifier of :math:`k` children
drafted without replacement, the chance that one of the *first* :math:`j` children is accepted is
at most :math:`\alpha^*_{\mathrm{wor}}(j)` (those :math:`j` draws are a without-replacement draw of
:math:`j`, and accepting one of them means the output token lies in that draw). Take
:math:`f^*_j = \alpha^*(j) - \alpha^*(j-1)`. For a context-free pair and every tree whose children
are ordered by non-increasing subtree bound (the trees the dynamic program returns when
:math:`f^*` is non-increasing), Abel summation of these prefix constraints gives
:math:`E_{\text{verifier}}(T) \le E^*(T)`, the model value with :math:`f^*`; hence the best such
tree under :math:`f^*` (:func:`alpha_star_vector` then :func:`sequoia_tree`) bounds every
token-level verifier on such trees. It does **not** bound (i) trees whose later children carry
larger subtrees (only prefix sets are constrained), (ii) block-level verifiers, which coordinate
across depths and can beat per-node :math:`\alpha^*` (theory section 10), (iii) real models, where
it bounds each node in its own context but an average vector is only an approximation.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validate import SpecTheoryInputError

__all__ = [
    "MAX_BUDGET",
    "AcceptanceVector",
    "CostModel",
    "Design",
    "GreedyTree",
    "SequoiaTree",
    "acceptance_from_rates",
    "alpha_star_vector",
    "best_design",
    "greedy_draft_tree",
    "greedy_tree",
    "measure_target_cost",
    "positional_acceptance",
    "sequoia_table",
    "sequoia_tree",
    "tree_paths",
    "tree_value",
]

#: Largest budget :func:`sequoia_tree` accepts.
MAX_BUDGET: int = 4096


# ---------------------------------------------------------------------- validation helpers
def _check_acceptance(acceptance: Any) -> np.ndarray:
    try:
        a = np.asarray(acceptance, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise SpecTheoryInputError(
            f"argument 'acceptance': expected a sequence of probabilities, got {acceptance!r}"
        ) from None
    if a.size == 0:
        raise SpecTheoryInputError("argument 'acceptance': empty vector")
    if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
        raise SpecTheoryInputError(
            f"argument 'acceptance': entries must lie in [0, 1], got {a.tolist()}"
        )
    return a


def _check_budget(budget: Any, name: str = "budget") -> int:
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or not (
        1 <= int(budget) <= MAX_BUDGET
    ):
        raise SpecTheoryInputError(
            f"argument {name!r}: must be an integer in 1..{MAX_BUDGET}, got {budget!r}"
        )
    return int(budget)


def first_accept(acceptance: Any) -> np.ndarray:
    r""":math:`f_k = a_k \prod_{j<k}(1 - a_j)`: the chance that child :math:`k` is the accepted
    one (the unconditional positional vector)."""
    a = _check_acceptance(acceptance)
    surv = np.concatenate(([1.0], np.cumprod(1.0 - a)[:-1]))
    return a * surv


def acceptance_from_rates(f: Any) -> np.ndarray:
    r"""Inverse of :func:`first_accept`: :math:`a_k = f_k / (1 - \sum_{j<k} f_j)` (0 where
    nothing is left)."""
    f = np.asarray(f, dtype=np.float64).ravel()
    if f.size == 0 or f.min() < -1e-12 or f.sum() > 1 + 1e-9:
        raise SpecTheoryInputError(
            f"argument 'f': expected non-negative entries summing to at most 1, got {f.tolist()}"
        )
    f = np.clip(f, 0.0, None)
    left = 1.0 - np.concatenate(([0.0], np.cumsum(f)[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(left > 1e-15, f / np.where(left > 1e-15, left, 1.0), 0.0)
    return np.clip(a, 0.0, 1.0)


# ---------------------------------------------------------------------- the dynamic program
def _positions(f: np.ndarray, budget: int) -> np.ndarray:
    K = min(len(f), budget)
    f = f[:K]
    nz = np.flatnonzero(f > 0)
    return f[: nz[-1] + 1] if nz.size else f[:0]


def _dp_unlimited(f: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
    """H[m] = best value of at most m nodes below a node; choice[k, m] = nodes in the subtree at
    position k (0 = position k and later empty) when m nodes are left for positions k..K."""
    K = len(f)
    H = np.zeros(N + 1)
    G = np.zeros((K + 1, N + 1))  # G[k] = best for positions k.. (0-based), G[K] = 0
    choice = np.zeros((K, N + 1), dtype=np.int32)
    if K == 0:
        return H, choice
    for m in range(1, N + 1):
        s = np.arange(1, m + 1)
        # cand[k, s-1] = f[k] (1 + H[s-1]) + G[k+1, m-s]
        cand = f[:, None] * (1.0 + H[None, :m]) + G[1:, m - s]
        best = cand.argmax(axis=1)
        val = cand[np.arange(K), best]
        # positions are filled left to right: G[k, m] depends on G[k+1, < m] only
        take = val > 0
        G[:K, m] = np.where(take, val, 0.0)
        choice[:, m] = np.where(take, best + 1, 0)
        H[m] = G[0, m]
    return H, choice


def _dp_depth(f: np.ndarray, N: int, D: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Best values V[d, m] (at most m nodes, depth <= d below a node) and the choices per depth."""
    K = len(f)
    V = np.zeros((D + 1, N + 1))
    choices: list[np.ndarray] = [np.zeros((K, N + 1), dtype=np.int32)]
    m = np.arange(N + 1)
    S = np.arange(1, N + 1)
    idx = m[:, None] - S[None, :]  # m - s
    valid = idx >= 0
    idx_c = np.where(valid, idx, 0)
    for d in range(1, D + 1):
        a = np.empty((K, N))
        for k in range(K):
            a[k] = f[k] * (1.0 + V[d - 1, :N])  # subtree of s nodes: f_k (1 + V_{d-1}(s-1))
        G = np.zeros(N + 1)
        ch = np.zeros((K, N + 1), dtype=np.int32)
        for k in range(K - 1, -1, -1):
            cand = np.where(valid, a[k][None, :] + G[idx_c], -np.inf)  # (N+1, N)
            best = cand.argmax(axis=1)
            val = cand[m, best]
            take = val > 0
            ch[k] = np.where(take, best + 1, 0)
            G = np.where(take, val, 0.0)
        V[d] = G
        choices.append(ch)
    return V, choices


def _build(nodes_below: Callable[[int, int, int], int], m: int, d: int) -> tuple[int, ...]:
    """Parent array (DFS preorder) from a choice function ``(depth_left, position, m) -> s``."""
    parents = [-1]

    def rec(u: int, m: int, d: int) -> None:
        k = 0
        while m > 0:
            s = nodes_below(d, k, m)
            if s == 0:
                return
            parents.append(u)
            c = len(parents) - 1
            rec(c, s - 1, d - 1)
            m -= s
            k += 1

    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 4 * MAX_BUDGET + 100))
    try:
        rec(0, m, d)
    finally:
        sys.setrecursionlimit(old)
    return tuple(parents)


@dataclass(frozen=True)
class SequoiaTree:
    r"""The tree of at most ``budget`` draft tokens with the largest expected accepted length under
    a positional acceptance vector (:func:`sequoia_tree`).

    Attributes
    ----------
    tree
        A :class:`spectheory.blocks.Tree` (children in drafting order: child :math:`k` of a node
        gets the :math:`k`-th draw of the scheme).
    expected_accepted
        Expected accepted draft tokens per target call under the model (bonus not counted).
    budget, max_depth
        The constraints (``max_depth`` None: unlimited).
    acceptance
        The conditional vector :math:`a_k` used.
    curve
        ``curve[n]``: the best expected accepted length with at most ``n`` nodes, ``n = 0..budget``
        (same depth limit).
    """

    tree: Any
    expected_accepted: float
    budget: int
    acceptance: tuple[float, ...]
    curve: np.ndarray = field(repr=False)
    max_depth: int | None = None

    @property
    def tokens_per_call(self) -> float:
        """``expected_accepted + 1`` (the bonus or correction token)."""
        return self.expected_accepted + 1.0

    @property
    def num_nodes(self) -> int:
        return int(self.tree.num_nodes)

    def paths(self) -> list[tuple[int, ...]]:
        """Every node as its path of child indices from the root (vLLM's tree format)."""
        return tree_paths(self.tree)

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "max_depth": self.max_depth,
            "num_nodes": self.num_nodes,
            "depth": int(self.tree.max_depth),
            "expected_accepted": self.expected_accepted,
            "tokens_per_call": self.tokens_per_call,
            "acceptance": list(self.acceptance),
            "parents": list(self.tree.parents),
            "scheme": self.tree.scheme,
            "curve": [float(x) for x in self.curve],
        }


def sequoia_tree(
    acceptance: Any, budget: int, *, max_depth: int | None = None, scheme: str = "wor"
) -> SequoiaTree:
    r"""Sequoia's optimal tree for a positional acceptance vector (module docstring).

    Parameters
    ----------
    acceptance
        ``acceptance[k-1]``: the chance that the :math:`k`-th child of a node is accepted given that
        the first :math:`k-1` were rejected. Positions past the end of the vector are never used.
    budget
        Number of draft tokens (nodes other than the root), at most :data:`MAX_BUDGET`.
    max_depth
        Optional limit on the tree depth.
    scheme
        The :class:`~spectheory.blocks.Tree` scheme of the result (``"wor"``: the :math:`k`-th child
        is the :math:`k`-th draw without replacement, the semantics of the positional vector).

    Examples
    --------
    >>> r = sequoia_tree([0.5], 3)          # one child per node: a chain
    >>> r.tree.parents, round(r.expected_accepted, 4)
    ((-1, 0, 1, 2), 0.875)
    """
    from .blocks import Tree

    a = _check_acceptance(acceptance)
    N = _check_budget(budget)
    f = _positions(first_accept(a), N)
    if max_depth is None:
        H, choice = _dp_unlimited(f, N)
        parents = _build(lambda d, k, m: int(choice[k, m]) if k < len(f) else 0, N, N + 1)
        curve = H
    else:
        D = _check_budget(max_depth, "max_depth")
        D = min(D, N)
        V, choices = _dp_depth(f, N, D)
        parents = _build(
            lambda d, k, m: int(choices[d][k, m]) if (k < len(f) and d > 0) else 0, N, D
        )
        curve = V[D]
    tree = Tree(parents, scheme)
    return SequoiaTree(tree, float(curve[N]), N, tuple(float(x) for x in a), curve.copy(),
                       None if max_depth is None else int(max_depth))


def sequoia_table(acceptance: Any, budget: int, max_depth: int) -> np.ndarray:
    """``table[d, n]``: the best expected accepted length with at most ``n`` nodes and depth at most
    ``d`` (``d = 0..max_depth``, ``n = 0..budget``)."""
    a = _check_acceptance(acceptance)
    N = _check_budget(budget)
    D = _check_budget(max_depth, "max_depth")
    f = _positions(first_accept(a), N)
    V, _ = _dp_depth(f, N, D)
    return V


def tree_value(tree: Any, acceptance: Any) -> float:
    r"""Expected accepted draft tokens of ``tree`` (a :class:`~spectheory.blocks.Tree`,
    :class:`~spectheory.blocks.Chain`, ...) under the positional model: the sum over nodes of the
    product of :math:`f_{\text{pos}}` along the path. Positions past the vector count 0."""
    from .blocks.drafts import as_tree

    t = as_tree(tree)
    f = first_accept(acceptance)
    reach = np.zeros(t.num_nodes + 1)
    reach[0] = 1.0
    for u, ch in enumerate(t.children):
        for k, c in enumerate(ch):
            reach[c] = reach[u] * (f[k] if k < len(f) else 0.0)
    return float(reach[1:].sum())


def tree_paths(tree: Any) -> list[tuple[int, ...]]:
    """Each node of ``tree`` as its tuple of child indices from the root, sorted by depth then
    lexicographically (the order vLLM's ``speculative_token_tree`` lists them)."""
    from .blocks.drafts import as_tree

    t = as_tree(tree)
    path: list[tuple[int, ...]] = [()] * (t.num_nodes + 1)
    for u, ch in enumerate(t.children):
        for k, c in enumerate(ch):
            path[c] = (*path[u], k)
    return sorted(path[1:], key=lambda x: (len(x), x))


def greedy_tree(acceptance: Any, budget: int, *, scheme: str = "wor") -> SequoiaTree:
    r"""Greedy baseline on the positional model (OPT-Tree, arXiv 2406.17276; EAGLE-2): add, one at a
    time, the node with the largest path probability among those that may be added (the next child
    of an existing node). Equal to :func:`sequoia_tree` when :math:`f` is non-increasing (then every
    node is worth at most its parent and its left sibling, so the top-``budget`` nodes form a tree);
    below it otherwise."""
    from .blocks import Tree

    a = _check_acceptance(acceptance)
    N = _check_budget(budget)
    f = first_accept(a)
    parents = [-1]
    reach = [1.0]
    nchild = [0]
    heap: list[tuple[float, int, int]] = []  # (-value, parent, position)
    if len(f) and f[0] > 0:
        heapq.heappush(heap, (-f[0], 0, 0))
    curve = [0.0]
    total = 0.0
    while heap and len(parents) - 1 < N:
        v, u, k = heapq.heappop(heap)
        parents.append(u)
        c = len(parents) - 1
        reach.append(-v)
        nchild.append(0)
        nchild[u] += 1
        total += -v
        curve.append(total)
        if k + 1 < len(f) and f[k + 1] > 0:
            heapq.heappush(heap, (-reach[u] * f[k + 1], u, k + 1))
        if f[0] > 0:
            heapq.heappush(heap, (-reach[c] * f[0], c, 0))
    # node ids must list children of a node in position order and parents first: relabel by DFS
    tree = _relabel(parents)
    curve += [total] * (N + 1 - len(curve))
    return SequoiaTree(Tree(tree, scheme), total, N, tuple(float(x) for x in a),
                       np.asarray(curve), None)


def _relabel(parents: Sequence[int]) -> tuple[int, ...]:
    ch: list[list[int]] = [[] for _ in parents]
    for i in range(1, len(parents)):
        ch[parents[i]].append(i)  # insertion order = position order
    out = [-1]
    stack = [(0, 0)]
    new = {0: 0}
    order: list[int] = []
    while stack:
        u, _ = stack.pop()
        order.append(u)
        for c in reversed(ch[u]):
            stack.append((c, 0))
    for u in order[1:]:
        new[u] = len(out)
        out.append(new[parents[u]])
    return tuple(out)


# ---------------------------------------------------------------------- per-context greedy trees
@dataclass(frozen=True)
class GreedyTree:
    r"""EAGLE-2 / OPT-Tree greedy draft tree at one context (:func:`greedy_draft_tree`).

    ``tree`` has scheme ``"greedy"`` (child :math:`k` = the :math:`k`-th most likely draft token);
    ``tokens[u]`` is node ``u``'s token (``tokens[0] = -1``); ``draft_score[u]`` the product of draft
    probabilities along the path; ``expected_accepted`` (when a target is given) is exact for the
    greedy verifier (accept when :math:`Y \sim p` is among the children):
    :math:`\sum_v \prod_{u \in \text{path}(v)} p(\text{token}_u \mid \cdot)`."""

    tree: Any
    tokens: tuple[int, ...]
    draft_score: tuple[float, ...]
    expected_accepted: float | None


def greedy_draft_tree(
    draft: Callable[[tuple[int, ...]], Any],
    budget: int,
    *,
    context: Sequence[int] = (),
    target: Callable[[tuple[int, ...]], Any] | None = None,
    max_children: int = 8,
) -> GreedyTree:
    """Grow the tree of ``budget`` nodes with the largest cumulative draft probability (EAGLE-2's
    expansion): pop the best frontier node, add it, push its first child and its next sibling."""
    from .blocks import Tree

    N = _check_budget(budget)
    ctx = tuple(int(t) for t in context)
    cache: dict[tuple[int, ...], np.ndarray] = {}

    def q_of(path: tuple[int, ...]) -> np.ndarray:
        if path not in cache:
            cache[path] = np.asarray(draft(ctx + path), dtype=np.float64)
        return cache[path]

    order_cache: dict[tuple[int, ...], np.ndarray] = {}

    def ranked(path: tuple[int, ...]) -> np.ndarray:
        if path not in order_cache:
            q = q_of(path)
            top = np.argsort(-q, kind="stable")[:max_children]
            order_cache[path] = top
        return order_cache[path]

    parents = [-1]
    tokens = [-1]
    score = [1.0]
    paths: list[tuple[int, ...]] = [()]
    heap: list[tuple[float, int, int, int]] = []  # (-score, tiebreak, parent, rank)
    cnt = 0

    def push(u: int, k: int) -> None:
        nonlocal cnt
        r = ranked(paths[u])
        if k < len(r):
            s = score[u] * float(q_of(paths[u])[r[k]])
            if s > 0:
                cnt += 1
                heapq.heappush(heap, (-s, cnt, u, k))

    push(0, 0)
    while heap and len(parents) - 1 < N:
        s, _, u, k = heapq.heappop(heap)
        tok = int(ranked(paths[u])[k])
        parents.append(u)
        tokens.append(tok)
        score.append(-s)
        paths.append((*paths[u], tok))
        c = len(parents) - 1
        push(u, k + 1)
        push(c, 0)
    new = _relabel(parents)
    # map old ids to new ids with the same DFS as _relabel
    ch: list[list[int]] = [[] for _ in parents]
    for i in range(1, len(parents)):
        ch[parents[i]].append(i)
    order: list[int] = []
    stack = [0]
    while stack:
        u = stack.pop()
        order.append(u)
        stack.extend(reversed(ch[u]))
    tok_new = [tokens[u] for u in order]
    score_new = [score[u] for u in order]
    tree = Tree(new, "greedy")
    exp = None
    if target is not None:
        reach = np.zeros(len(new))
        reach[0] = 1.0
        path_new = [paths[u] for u in order]
        for i in range(1, len(new)):
            par = new[i]
            p = np.asarray(target(ctx + path_new[par]), dtype=np.float64)
            reach[i] = reach[par] * float(p[tok_new[i]])
        exp = float(reach[1:].sum())
    return GreedyTree(tree, tuple(tok_new), tuple(score_new), exp)


# ---------------------------------------------------------------------- acceptance vectors
@dataclass(frozen=True)
class AcceptanceVector:
    r"""A positional acceptance vector measured on data.

    Attributes
    ----------
    conditional
        :math:`a_k` (``acceptance`` of :func:`sequoia_tree`).
    first
        :math:`f_k = \Pr(\text{child } k \text{ is the accepted one})`, averaged over positions.
    cumulative
        :math:`F(k) = \sum_{j \le k} f_j` (the acceptance of the rule with :math:`k` drafts).
    stderr
        Standard error of ``cumulative`` over positions (and Monte Carlo), per :math:`k`.
    verifier, scheme, positions
        What was measured, and on how many positions.
    """

    conditional: np.ndarray
    first: np.ndarray
    cumulative: np.ndarray
    stderr: np.ndarray
    verifier: str
    scheme: str
    positions: int
    method: str = "exact"

    def to_dict(self) -> dict[str, Any]:
        return {"verifier": self.verifier, "scheme": self.scheme, "positions": self.positions,
                "method": self.method, "conditional": self.conditional.tolist(),
                "first": self.first.tolist(), "cumulative": self.cumulative.tolist(),
                "stderr": self.stderr.tolist()}


def _rows(p: Any, q: Any) -> tuple[np.ndarray, np.ndarray]:
    from ._validate import as_distribution

    P = np.atleast_2d(as_distribution(p, "p"))
    Q = np.atleast_2d(as_distribution(q, "q"))
    if P.shape != Q.shape:
        raise SpecTheoryInputError(f"arguments 'p', 'q': shapes {P.shape} and {Q.shape} differ")
    return P, Q


def _vector(F: np.ndarray, se: np.ndarray, verifier: str, scheme: str, method: str
            ) -> AcceptanceVector:
    Fm = np.maximum.accumulate(np.clip(F.mean(axis=0), 0.0, 1.0))
    f = np.diff(np.concatenate(([0.0], Fm)))
    return AcceptanceVector(acceptance_from_rates(f), f, Fm, se, verifier, scheme, F.shape[0],
                            method)


def positional_acceptance(
    p: Any, q: Any, k: int, *, verifier: str = "rrs_wor", samples: int = 256,
    seed: int | None = 0,
) -> AcceptanceVector:
    r"""Positional acceptance vector of a token-level rule, averaged over the rows of ``p``, ``q``
    (``(T, V)`` per-position target and draft distributions).

    ``verifier``:

    * ``"rrs_wor"`` (scheme ``"wor"``): :math:`F(j)` exact for :math:`j \le 2`
      (:class:`~spectheory.verifiers.rrs_wor.RRSWithoutReplacement`), beyond by the unbiased path
      estimator of its ``acceptance_mc`` run once for all prefixes (``samples`` paths per row);
    * ``"rrs"`` (scheme ``"iid"``, siblings not merged): exact, :math:`a_j = \beta_j` of the
      recursion of RRS with replacement;
    * ``"greedy"`` (scheme ``"greedy"``): exact, :math:`f_j = p(\text{j-th most likely draft token})`.
    """
    P, Q = _rows(p, q)
    K = _check_budget(k, "k")
    T, V = P.shape
    if verifier == "greedy":
        order = np.argsort(-Q, axis=1, kind="stable")[:, :K]
        f = np.take_along_axis(P, order, axis=1)
        F = np.cumsum(f, axis=1)
        if K > V:
            F = np.concatenate([F, np.repeat(F[:, -1:], K - V, axis=1)], axis=1)
        return _vector(F, F.std(axis=0, ddof=1) / np.sqrt(T) if T > 1 else np.zeros(K),
                       "greedy", "greedy", "exact")
    if verifier == "rrs":
        F = np.empty((T, K))
        for t in range(T):
            r = P[t].copy()
            surv = 1.0
            for j in range(K):
                beta = float(np.minimum(r, Q[t]).sum())
                surv *= 1.0 - beta
                F[t, j] = 1.0 - surv
                res = np.maximum(r - Q[t], 0.0)
                tot = res.sum()
                if tot <= 0:
                    F[t, j:] = 1.0
                    break
                r = res / tot
        return _vector(F, F.std(axis=0, ddof=1) / np.sqrt(T) if T > 1 else np.zeros(K),
                       "rrs", "iid", "exact")
    if verifier != "rrs_wor":
        raise SpecTheoryInputError(
            f"argument 'verifier': expected 'rrs_wor', 'rrs' or 'greedy', got {verifier!r}"
        )
    from .verifiers.rrs_wor import RRSWithoutReplacement

    rule = RRSWithoutReplacement()
    rng = np.random.default_rng(seed)
    F = np.empty((T, K))
    var = np.zeros((T, K))
    method = "exact" if K <= 2 else "exact j<=2, mc beyond"
    for t in range(T):
        support = int(np.count_nonzero(Q[t] > 0))
        for j in range(min(K, 2)):
            F[t, j] = rule.acceptance(P[t], Q[t], j + 1) if support > j else F[t, j - 1]
        if K > 2:
            surv, sv = _wor_paths(P[t], Q[t], K, int(samples), rng)
            F[t, 2:] = 1.0 - surv[2:]
            var[t, 2:] = sv[2:]
    se = np.sqrt(F.var(axis=0, ddof=1) / T + var.sum(axis=0) / T**2) if T > 1 else np.sqrt(var[0])
    return _vector(F, se, "rrs_wor", "wor", method)


def _wor_paths(p: np.ndarray, q: np.ndarray, K: int, S: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the mean of Pr(first j all rejected), j = 1..K, by the path estimator
    of ``RRSWithoutReplacement.acceptance_mc`` (each prefix of a path is a path of that length).
    Restricted to the union of the supports of p and q (tokens outside both never matter)."""
    keep = (p > 0) | (q > 0)
    p, q = p[keep], q[keep]
    V = p.shape[0]
    R = np.broadcast_to(p, (S, V)).copy()
    removed = np.zeros((S, V), dtype=bool)
    surv = np.ones(S)
    out = np.ones(K)
    var = np.zeros(K)
    for i in range(K):
        qm = np.where(removed, 0.0, q[None, :])
        tot = qm.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            qi = np.where(tot > 0, qm / np.where(tot > 0, tot, 1.0), 0.0)
        over = np.maximum(qi - R, 0.0)
        rej = np.where(tot[:, 0] > 0, over.sum(axis=1), 1.0)  # nothing left to draft: rejected
        surv = surv * rej
        out[i] = surv.mean()
        var[i] = surv.var(ddof=1) / S if S > 1 else 0.0
        if i == K - 1:
            break
        rest = np.maximum(R - qi, 0.0)
        norm = rest.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            R = np.where(norm > 0, rest / np.where(norm > 0, norm, 1.0), 0.0)
        cdf = np.cumsum(over, axis=1)
        u = rng.random(S) * cdf[:, -1]
        x = np.minimum((cdf <= u[:, None]).sum(axis=1), V - 1)
        ok = rej > 0
        removed[np.flatnonzero(ok), x[ok]] = True
    return out, var


def alpha_star_vector(p: Any, q: Any, k: int, *, scheme: str = "wor") -> AcceptanceVector:
    r"""The positional vector implied by :math:`\alpha^*`: :math:`F(j) = \alpha^*(j)` of the
    scheme (``"wor"`` or ``"iid"``) averaged over the rows, :math:`f_j = F(j) - F(j-1)`. See the
    module docstring for the sense in which the resulting tree value bounds token-level verification.
    Where a row's draft has fewer than :math:`j` tokens of positive mass (without replacement),
    :math:`\alpha^*(j)` is taken as :math:`\alpha^*` of the whole support."""
    from . import IID, WithoutReplacement, optimal_acceptance

    P, Q = _rows(p, q)
    K = _check_budget(k, "k")
    if scheme not in ("wor", "iid"):
        raise SpecTheoryInputError(f"argument 'scheme': expected 'wor' or 'iid', got {scheme!r}")
    T = P.shape[0]
    F = np.empty((T, K))
    support = np.count_nonzero(Q > 0, axis=1)
    for j in range(1, K + 1):
        if scheme == "iid":
            F[:, j - 1] = np.atleast_1d(optimal_acceptance(P, IID(Q, j)).value)
            continue
        ok = support >= j
        if ok.any():
            F[ok, j - 1] = np.atleast_1d(optimal_acceptance(P[ok], WithoutReplacement(Q[ok], j)).value)
        if (~ok).any():
            F[~ok, j - 1] = F[~ok, j - 2] if j > 1 else 0.0
    se = F.std(axis=0, ddof=1) / np.sqrt(T) if T > 1 else np.zeros(K)
    return _vector(F, se, "alpha*", scheme, "exact")


# ---------------------------------------------------------------------- cost model
@dataclass(frozen=True)
class CostModel:
    r"""Time of one speculative step, in units of one plain target call (or seconds).

    ``target_sizes``/``target_costs``: cost of a target call verifying ``size`` tokens (tree nodes
    + 1), linearly interpolated (constant beyond the ends; default: 1 for every size, the
    memory-bound regime). ``draft_per_depth``: cost of one draft forward (one tree level, EAGLE-2
    / Sequoia draft a level per forward). ``overhead``: fixed cost per step."""

    target_sizes: tuple[float, ...] = (1.0,)
    target_costs: tuple[float, ...] = (1.0,)
    draft_per_depth: float = 0.0
    overhead: float = 0.0

    def __post_init__(self) -> None:
        s = np.asarray(self.target_sizes, dtype=np.float64)
        c = np.asarray(self.target_costs, dtype=np.float64)
        if s.size == 0 or s.shape != c.shape or np.any(np.diff(s) <= 0) or np.any(c <= 0):
            raise SpecTheoryInputError(
                "argument 'target_costs': need increasing sizes and positive costs of equal length"
            )
        if self.draft_per_depth < 0 or self.overhead < 0:
            raise SpecTheoryInputError("arguments 'draft_per_depth', 'overhead': must be >= 0")

    @classmethod
    def parse(cls, table: str | None, draft: float = 0.0, overhead: float = 0.0) -> CostModel:
        """From ``"1:1,16:1.05,64:1.4"`` (size:cost pairs) or None (constant 1)."""
        if not table:
            return cls(draft_per_depth=draft, overhead=overhead)
        try:
            pairs = [tuple(float(x) for x in item.split(":")) for item in table.split(",") if item]
            sizes, costs = zip(*sorted(pairs), strict=True)
        except ValueError:
            raise SpecTheoryInputError(
                f"argument 'target_costs': expected size:cost pairs like 1:1,64:1.4, got {table!r}"
            ) from None
        return cls(tuple(sizes), tuple(costs), draft, overhead)

    def target(self, size: Any) -> Any:
        return np.interp(size, self.target_sizes, self.target_costs)

    def step(self, nodes: Any, depth: Any) -> Any:
        """Cost of one step with ``nodes`` draft tokens and ``depth`` draft levels."""
        return self.target(np.asarray(nodes) + 1.0) + self.draft_per_depth * np.asarray(depth) \
            + self.overhead


@dataclass(frozen=True)
class Design:
    """The budget and depth that maximise tokens per unit time (:func:`best_design`)."""

    budget: int
    depth: int
    expected_accepted: float
    tokens_per_call: float
    cost: float
    tokens_per_time: float
    tree: SequoiaTree
    table: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "depth": self.depth,
                "expected_accepted": self.expected_accepted,
                "tokens_per_call": self.tokens_per_call, "cost": self.cost,
                "tokens_per_time": self.tokens_per_time}


def best_design(acceptance: Any, cost: CostModel, *, max_budget: int = 128, max_depth: int = 12
                ) -> Design:
    r"""Maximise :math:`(1 + E_{d}(n)) / \text{cost}(n, d)` over budgets :math:`n \le`
    ``max_budget`` and depths :math:`d \le` ``max_depth`` with the depth-limited dynamic program
    (:func:`sequoia_table`), then return the optimal tree."""
    N = _check_budget(max_budget, "max_budget")
    D = min(_check_budget(max_depth, "max_depth"), N)
    V = sequoia_table(acceptance, N, D)
    n = np.arange(N + 1)[None, :]
    d = np.arange(D + 1)[:, None]
    # a tree of n nodes and depth <= d needs at most min(n, d) draft levels
    cost_grid = cost.step(np.broadcast_to(n, V.shape), np.minimum(n, d))
    rate = (1.0 + V) / cost_grid
    rate[:, 0] = 1.0 / cost.step(0, 0)
    dd, nn = np.unravel_index(int(np.argmax(rate)), rate.shape)
    tree = sequoia_tree(acceptance, max(int(nn), 1), max_depth=max(int(dd), 1))
    return Design(int(nn), int(dd), float(V[dd, nn]), float(1 + V[dd, nn]),
                  float(cost_grid[dd, nn]), float(rate[dd, nn]), tree, rate)


def measure_target_cost(model: Any, sizes: Sequence[int], *, context: int = 128, repeats: int = 3,
                        seed: int = 0) -> CostModel:
    """Time a ``transformers`` causal LM verifying ``size`` new tokens after a cached context of
    ``context`` tokens (best of ``repeats``), relative to ``size = 1``. Tree attention would verify
    a tree in the same call; this times a chain of the same number of tokens."""
    import copy
    import inspect
    import time

    import torch

    g = np.random.default_rng(seed)
    V = int(model.config.vocab_size)
    # transformers >= 5 names the cache argument ``cache`` (``past_key_values`` is deprecated)
    kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    ctx = torch.as_tensor(g.integers(0, V, size=(1, context)))
    with torch.no_grad():
        out = model(input_ids=ctx, use_cache=True)
    cache = out.past_key_values
    sizes = sorted({1, *(int(s) for s in sizes)})
    times = []
    for s in sizes:
        x = torch.as_tensor(g.integers(0, V, size=(1, s)))
        best = np.inf
        for _ in range(repeats):
            c = copy.deepcopy(cache)
            t0 = time.perf_counter()
            with torch.no_grad():
                model(input_ids=x, use_cache=True, **{kw: c})
            best = min(best, time.perf_counter() - t0)
        times.append(best)
    base = times[0]
    return CostModel(tuple(float(s) for s in sizes), tuple(t / base for t in times))
