r"""Block-level rules that coordinate across depths: ``"block"`` (Sun et al., ICLR 2025),
``"multipath"`` (Thomas & Pal, arXiv 2602.16961) and ``"traversal"`` (Weng et al., NeurIPS 2025).

Each registers itself in :data:`spectheory.blocks.verify.BLOCK_RULES`. Every rule has an exact
conditional output law (:meth:`~spectheory.blocks.verify.BlockVerifier.output_law`, exact in
Fractions on Fraction models) and a sampler that flips the rule's own coins (what a decoder calls).
The arithmetic works on float64 arrays and on object arrays of :class:`fractions.Fraction` alike
(``np.maximum``, products and sums; no float casts on the exact path).

Notation: :math:`p_i = p(\cdot \mid x^{i})` and :math:`q_i = q(\cdot \mid x^{i})` are the target
and draft conditionals after the first :math:`i` drafted tokens :math:`x^{i}` of a path;
:math:`[a]_+ = \max(a, 0)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from .._validate import SpecTheoryInputError
from .drafts import Tree, children_law
from .problem import BlockProblem
from .verify import BLOCK_RULES, BlockVerifier, OutputLaw, _categorical, add_mass

__all__ = ["BlockVerification", "MultiPath", "TraversalVerification", "block_law"]

Getter = Callable[[tuple[int, ...]], np.ndarray]


# ---------------------------------------------------------------------- small exact-friendly helpers
def _total(a: np.ndarray) -> Any:
    """Sum of a (V,) array: exact for object arrays, float otherwise."""
    if a.dtype == object:
        return sum(a.tolist(), start=0 * a[0])
    return float(a.sum())


def _pos(a: np.ndarray) -> np.ndarray:
    """Elementwise :math:`[a]_+` (object arrays stay object arrays)."""
    return np.maximum(a, 0 * a[0]) if a.dtype == object else np.maximum(a, 0.0)


def _ratio(num: Any, den: Any, one: Any) -> Any:
    r""":math:`\min(\text{num}/\text{den}, 1)`, with a drafted token whose draft mass underflowed
    to 0 in floats treated as the limit (1 when ``num > 0``, else 0) instead of NaN. In exact
    arithmetic ``den > 0`` for every drafted token."""
    if den > 0:
        return min(num / den, one)
    return one if num > 0 else 0 * one


def _f64(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) if a.dtype == object else a


def _one(problem: BlockProblem) -> Any:
    return Fraction(1) if problem.exact else 1.0


def _check_scheme(name: str, tree: Tree) -> None:
    if tree.scheme not in ("iid", "wor"):
        raise SpecTheoryInputError(
            f"argument 'verifier': rule {name!r} needs sampled drafts (scheme 'iid' or 'wor'); "
            f"the tree drafts its children by {tree.scheme!r}"
        )


# ---------------------------------------------------------------------- block verification core
def _bv_weights(
    ps: Sequence[np.ndarray], qs: Sequence[np.ndarray], xs: Sequence[int], one: Any
) -> tuple[list[Any], list[Any], list[np.ndarray], list[Any]]:
    r"""Weights :math:`w_i`, block acceptances :math:`h_i`, residuals :math:`[w_i p_i - q_i]_+`
    and their masses along one path (Sun et al., Algorithm 2)."""
    g = len(xs)
    w = [one]
    for i in range(g):
        x = xs[i]
        w.append(_ratio(w[i] * ps[i][x], qs[i][x], one))
    h: list[Any] = [None] * (g + 1)
    res: list[np.ndarray] = [None] * (g + 1)  # type: ignore[list-item]
    mass: list[Any] = [None] * (g + 1)
    h[g] = w[g]
    for i in range(g):
        r = _pos(w[i] * ps[i] - qs[i])
        s = _total(r)
        d = _total(_pos(qs[i] - w[i] * ps[i]))  # = s + 1 - w_i, summed without cancellation
        res[i], mass[i] = r, s
        # d == 0 only when w_i = 1 and q_i = p_i: then every later h_j = 1 and h_i is never read
        h[i] = s / d if d > 0 else one
    return w, h, res, mass


def block_law(
    ps: Sequence[np.ndarray], qs: Sequence[np.ndarray], xs: Sequence[int], one: Any
) -> list[tuple[int, np.ndarray]]:
    r"""Exact output law of block verification on one drafted path.

    Parameters
    ----------
    ps
        ``ps[i]`` = :math:`p(\cdot\mid x^{i})` for :math:`i = 0..\gamma`.
    qs
        ``qs[i]`` = the draft law the path's token :math:`x_{i+1}` was drawn from,
        :math:`i = 0..\gamma-1` (for ``"multipath"`` the skewed law of the selected path).
    xs
        The drafted tokens :math:`x_1..x_\gamma`.
    one
        ``1`` in the arithmetic of the arrays (``Fraction(1)`` or ``1.0``).

    Returns
    -------
    list of (tau, mass)
        ``mass[y]`` = Pr(accepted length = tau, output token = y); the masses sum to 1.
    """
    g = len(xs)
    _w, h, res, mass = _bv_weights(ps, qs, xs, one)
    out: list[tuple[int, np.ndarray]] = []
    tail = one
    for i in range(g, -1, -1):
        pr = tail * h[i] if i > 0 else tail
        if i > 0:
            tail = tail * (one - h[i])
        if pr == 0:
            continue
        if i == g:
            out.append((i, pr * ps[g]))
        elif mass[i] > 0:
            out.append((i, pr * res[i] / mass[i]))
        else:  # pragma: no cover - float round-off only (exact: pr == 0 here)
            out.append((i, pr * ps[i]))
    return out


def _block_sample(
    ps: Sequence[np.ndarray], qs: Sequence[np.ndarray], xs: Sequence[int], rng: np.random.Generator
) -> tuple[int, int]:
    """Sun et al.'s sampler: draw eta_1..eta_gamma, backward pass to the last accepted block."""
    g = len(xs)
    ps = [_f64(a) for a in ps]
    qs = [_f64(a) for a in qs]
    _w, h, res, mass = _bv_weights(ps, qs, xs, 1.0)
    eta = rng.random(g)
    tau = 0
    for i in range(g, 0, -1):  # the last i with eta_i <= h_i (equivalently, the forward loop)
        if eta[i - 1] <= h[i]:
            tau = i
            break
    if tau == g:
        return tau, _categorical(rng, ps[g])
    r = res[tau] if mass[tau] > 0 else ps[tau]
    return tau, _categorical(rng, r)


class BlockVerification(BlockVerifier):
    r"""Block verification (Sun, Mendlovic, Leviathan, Aharoni, Ro, Beirami, Suresh, "Block
    Verification Accelerates Speculative Decoding", ICLR 2025, arXiv 2403.10444), one chain.

    With :math:`w_0 = 1` and :math:`w_i = \min\{w_{i-1}\,p_{i-1}(x_i)/q_{i-1}(x_i),\ 1\}`, the
    block of length :math:`i` is accepted with probability

    .. math:: h_\gamma = w_\gamma, \qquad
       h_i = \frac{\sum_x [w_i p_i(x) - q_i(x)]_+}{\sum_x [w_i p_i(x) - q_i(x)]_+ + 1 - w_i}
       \quad (1 \le i < \gamma),

    independently (:math:`\eta_i \sim U(0,1)`, accept block :math:`i` iff
    :math:`\eta_i \le h_i`); the accepted length :math:`\tau` is the largest accepted :math:`i`
    (0 when none is; the paper's backward pass). The extra token is drawn from :math:`p_\gamma` when
    :math:`\tau = \gamma`, else from the residual :math:`[w_\tau p_\tau - q_\tau]_+` normalised
    (:math:`\tau = 0` gives the usual SD residual). So

    .. math:: \Pr(\tau = i) = h_i \prod_{j > i} (1 - h_j), \qquad
       \Pr(\tau = 0) = \prod_{j \ge 1} (1 - h_j).

    Filled in: the denominator is computed as :math:`\sum_x [q_i(x) - w_i p_i(x)]_+` (equal to
    the paper's, without cancellation); where it is 0 (then :math:`w_i = 1` and :math:`q_i = p_i`,
    so every later :math:`h_j = 1` and :math:`h_i` is never consulted) we set :math:`h_i = 1`.
    Applies to chains drafted by sampling (scheme ``"iid"`` or ``"wor"``, which coincide for one
    child). Lossless by Sun et al.'s theorem (and checked by exact enumeration, see
    ``docs/block_rules.md``).
    """

    name = "block"

    def check(self, tree: Tree) -> None:
        if not tree.is_chain():
            raise SpecTheoryInputError(
                "argument 'verifier': rule 'block' verifies one chain; the draft structure "
                f"{tree.describe()} branches (use 'multipath' or 'traversal')"
            )
        _check_scheme(self.name, tree)

    @staticmethod
    def _path(problem: BlockProblem, tokens: tuple[int, ...]) -> tuple[list[int], list[int]]:
        tree = problem.tree
        nodes = [0]
        while tree.children[nodes[-1]]:
            nodes.append(tree.children[nodes[-1]][0])
        return nodes, [tokens[u] for u in nodes[1:]]

    def output_law(self, problem: BlockProblem, tokens: tuple[int, ...]) -> OutputLaw:
        nodes, xs = self._path(problem, tokens)
        ps = [problem.p(tuple(xs[:i])) for i in range(len(xs) + 1)]
        qs = [problem.q(tuple(xs[:i])) for i in range(len(xs))]
        out: OutputLaw = {}
        for tau, m in block_law(ps, qs, xs, _one(problem)):
            add_mass(out, nodes[tau], m, problem.V)
        return out

    def sample(
        self, problem: BlockProblem, tokens: tuple[int, ...], rng: np.random.Generator
    ) -> tuple[int, int]:
        nodes, xs = self._path(problem, tokens)
        ps = [problem.p(tuple(xs[:i])) for i in range(len(xs) + 1)]
        qs = [problem.q(tuple(xs[:i])) for i in range(len(xs))]
        tau, y = _block_sample(ps, qs, xs, rng)
        return nodes[tau], y


# ---------------------------------------------------------------------- greedy multi-path
def _rank_key(p: np.ndarray, q: np.ndarray) -> list[tuple[int, Any, int]]:
    """Sort key of each token: ascending p/q, ties by smaller token id, q = 0 ranked last."""
    return [(0, p[x] / q[x], x) if q[x] > 0 else (1, 0, x) for x in range(len(p))]


def _below(q: np.ndarray, key: list[tuple[int, Any, int]]) -> np.ndarray:
    r"""``F[x]`` = :math:`\sum_{y \prec x} q(y)` (mass ranked strictly below ``x``)."""
    order = sorted(range(len(q)), key=lambda x: key[x])
    out = np.empty(len(q), dtype=q.dtype)
    acc = 0 * q[0]
    for x in order:
        out[x] = acc
        acc = acc + q[x]
    return out


class MultiPath(BlockVerifier):
    r"""Greedy multi-path block verification (GBV; Thomas & Pal, "Greedy Multi-Path Block
    Verification for Faster Decoding in Speculative Sampling", arXiv 2602.16961).

    GBV splits a multi-path verifier into a *path selection* and single-path block verification
    with the *skewed draft law* that the selection induces. Following the authors' reference
    implementation (``gbv_verify``: the paper's text was not available to us; only its abstract,
    reviews and the public reference code), at every node of the selected path the vocabulary is
    ranked by :math:`p(x\mid u)/q(x\mid u)` (a total order :math:`\prec`) and the walk steps to the
    drafted child with the :math:`\prec`-largest token: the selected path is the lexicographic
    maximum of the drafted paths. For :math:`K` i.i.d. paths (:class:`~spectheory.blocks.Chains`)
    its law is :math:`F(x^\gamma)^K - F^-(x^\gamma)^K` (:math:`F` the lexicographic CDF of
    :math:`q(x^\gamma)`), with prefix conditionals

    .. math:: \tilde q(x \mid u) = \frac{(A + q(u)F_u(x) + q(u)q(x\mid u))^K - (A + q(u)F_u(x))^K}
       {(A + q(u))^K - A^K},

    :math:`A` the mass of paths whose prefix ranks below :math:`u` and
    :math:`F_u(x) = \sum_{y \prec x} q(y \mid u)`. Block verification (:class:`BlockVerification`)
    then runs on the selected path with :math:`q` replaced by :math:`\tilde q`; it is lossless for
    any draft law used with its own conditionals, so GBV is lossless. With one path it is
    ``"block"``.

    Filled in here:

    * **Ties** in :math:`p/q` are broken by the smaller token id ranking lower, both in
      :math:`F_u` and in the choice of child (the reference code ranks ties by id in the CDF but
      picks the first child among equal ratios, which makes its :math:`\tilde q` slightly off on
      ties; measure zero with float models, frequent with Fractions). Tokens with
      :math:`q(x\mid u) = 0` rank highest (never drafted; they carry no mass).
    * **Trees** (the paper has :math:`K` i.i.d. paths). Supported: trees in which every node at
      depth :math:`d` has the same number :math:`k_d` of children and all leaves are at the
      maximal depth (``Chain``, ``Chains``, ``Tree.branching``). ``"iid"``: children that carry the
      same token are merged (as a trie); if :math:`m` merged nodes carry the selected prefix, the
      next token is the maximum of :math:`mk_d` i.i.d. draws, so
      :math:`\tilde q(x\mid u) = \sum_m \Pr(m \mid u)\,[(F_u(x) + q(x\mid u))^{mk_d} -
      F_u(x)^{mk_d}]`, with :math:`\Pr(m \mid u)` updated along the path by the binomial count of
      the selected token (for ``Chains`` this is the closed form above). ``"wor"``: siblings are
      distinct, :math:`\tilde q(\cdot\mid u)` is the law of the :math:`\prec`-maximum of
      :math:`k_d` draws without replacement (enumerated).
    * The output node for an accepted prefix shared by merged nodes is the smallest node id.
    """

    name = "multipath"

    def check(self, tree: Tree) -> None:
        _check_scheme(self.name, tree)
        D = tree.max_depth
        for d in range(D + 1):
            ks = {len(tree.children[u]) for u in range(len(tree.parents)) if tree.depth[u] == d}
            if len(ks) != 1 or (d < D and ks == {0}):
                raise SpecTheoryInputError(
                    "argument 'verifier': rule 'multipath' needs every node at one depth to have "
                    f"the same number of children and all leaves at depth {D} (Chain, Chains, "
                    f"Tree.branching); {tree.describe()} is not of that form"
                )

    def _select(
        self, tree: Tree, tokens: tuple[int, ...], P: Getter, Q: Getter, one: Any
    ) -> tuple[list[int], list[int], list[np.ndarray]]:
        """The selected path (representative nodes, tokens) and the skewed draft laws on it."""
        S = [0]
        nodes = [0]
        xs: list[int] = []
        qt: list[np.ndarray] = []
        mdist: dict[int, Any] = {1: one}  # law of the number of merged nodes carrying the prefix
        while tree.children[S[0]]:
            path = tuple(xs)
            p, q = P(path), Q(path)
            k = len(tree.children[S[0]])
            key = _rank_key(p, q)
            F = _below(q, key)
            cands = [c for s in S for c in tree.children[s]]
            x = max((tokens[c] for c in cands), key=lambda t: key[t])
            if tree.scheme == "iid":
                skew = 0 * q
                for m, pm in mdist.items():
                    n = m * k
                    # (F + q)^n - F^n as q * sum_j (F + q)^j F^(n-1-j): no cancellation when
                    # q is tiny beside F (the difference of powers underflowed to 0)
                    G = F + q
                    skew = skew + pm * q * sum(
                        (G**j * F ** (n - 1 - j) for j in range(n)), start=0 * q
                    )
                new: dict[int, Any] = {}
                for m, pm in mdist.items():
                    n = m * k
                    for j in range(1, n + 1):
                        v = pm * math.comb(n, j) * q[x] ** j * F[x] ** (n - j)
                        if v != 0:
                            new[j] = new.get(j, 0 * v) + v
                tot = sum(new.values(), start=0 * one)
                mdist = {j: v / tot for j, v in new.items()}
            else:  # "wor": one node, k distinct children
                skew = 0 * q
                for tup, pr in children_law(q, k, "wor"):
                    best = max(tup, key=lambda t: key[t])
                    skew[best] = skew[best] + pr
            qt.append(skew)
            xs.append(x)
            S = [c for c in cands if tokens[c] == x]
            nodes.append(min(S))
        return nodes, xs, qt

    def output_law(self, problem: BlockProblem, tokens: tuple[int, ...]) -> OutputLaw:
        nodes, xs, qt = self._select(problem.tree, tokens, problem.p, problem.q, _one(problem))
        ps = [problem.p(tuple(xs[:i])) for i in range(len(xs) + 1)]
        out: OutputLaw = {}
        for tau, m in block_law(ps, qt, xs, _one(problem)):
            add_mass(out, nodes[tau], m, problem.V)
        return out

    def sample(
        self, problem: BlockProblem, tokens: tuple[int, ...], rng: np.random.Generator
    ) -> tuple[int, int]:
        def P(h: tuple[int, ...]) -> np.ndarray:
            return _f64(problem.p(h))

        def Q(h: tuple[int, ...]) -> np.ndarray:
            return _f64(problem.q(h))

        nodes, xs, qt = self._select(problem.tree, tokens, P, Q, 1.0)
        ps = [P(tuple(xs[:i])) for i in range(len(xs) + 1)]
        tau, y = _block_sample(ps, qt, xs, rng)
        return nodes[tau], y


# ---------------------------------------------------------------------- traversal verification
class TraversalVerification(BlockVerifier):
    r"""Traversal verification (Weng, Hu, Chen, Liu, Mei, Qiu, Tian, Shi, "Traversal Verification
    for Speculative Tree Decoding", NeurIPS 2025, arXiv 2505.12398).

    Every node :math:`v` carries a weight :math:`w(v)`, a target law :math:`t_v` (first
    :math:`p(\cdot\mid v)`) and a draft law :math:`s_v` (first :math:`q(\cdot\mid v)`); the root has
    :math:`w = 1` and a child :math:`c` of :math:`v` with token :math:`x`
    :math:`w(c) = \min\{w(v)\,t_v(x)/s_v(x), 1\}`. The verifier repeatedly takes the first leaf in
    post-order (deepest, leftmost; children in node order) and accepts the whole path root
    :math:`\to` leaf with probability :math:`w(\text{leaf})`, then draws the extra token from
    :math:`t_{\text{leaf}}`. On rejection the leaf is deleted and its parent :math:`v` updated:

    .. math:: S = \sum_x [w(v)t_v(x) - s_v(x)]_+,\quad
       t_v \leftarrow [w(v)t_v - s_v]_+ / S,\quad
       w(v) \leftarrow \frac{S}{S + 1 - w(v)},

    and :math:`s_v` drops the rejected token and is renormalised; the weights of the remaining
    subtrees of :math:`v` are recomputed. When only the root is left it is accepted (its weight is
    1) and the extra token comes from its residual :math:`t_0`. On a chain this is exactly
    ``"block"`` (checked exactly in the tests).

    Filled in here:

    * The draft update :math:`s_v \leftarrow s_v` without the rejected token is the
      without-replacement conditional: used for the ``"wor"`` scheme (the paper's setting, its
      sequence-level RRS without replacement). For ``"iid"`` trees (duplicate siblings allowed, not
      merged) the remaining siblings are independent of the rejected one, so :math:`s_v` is kept
      (sequence-level RRS *with* replacement). Both are lossless by the induction in
      ``docs/block_rules.md`` and checked by exact enumeration.
    * :math:`S + 1 - w(v)` is computed as :math:`\sum_x [s_v(x) - w(v)t_v(x)]_+`; where it is 0 the
      rejection had probability 0 and we set :math:`w(v) = 1`.
    * Other schemes (``"greedy"``, ``"hub"``) are refused: the rule needs the drafts' sampling law.
    """

    name = "traversal"

    def check(self, tree: Tree) -> None:
        _check_scheme(self.name, tree)

    @staticmethod
    def _update(
        w: Any, t: np.ndarray, s: np.ndarray, x: int, one: Any, wor: bool
    ) -> tuple[Any, np.ndarray, np.ndarray]:
        r = _pos(w * t - s)
        S = _total(r)
        D = _total(_pos(s - w * t))
        w2 = S / D if D > 0 else one
        t2 = r / S if S > 0 else t
        if wor:
            s2 = s.copy()
            s2[x] = 0 * s[x]
            rest = _total(s2)
            s2 = s2 / rest if rest > 0 else s2
        else:
            s2 = s
        return w2, t2, s2

    def output_law(self, problem: BlockProblem, tokens: tuple[int, ...]) -> OutputLaw:
        tree = problem.tree
        one = _one(problem)
        wor = tree.scheme == "wor"
        out: OutputLaw = {}

        def sub(v: int, path: tuple[int, ...], w: Any, reach: Any) -> Any:
            """Process v's subtree entered with probability ``reach``; return the probability
            that it is rejected (flows back to the parent)."""
            t = problem.p(path)
            if tree.children[v]:
                s = problem.q(path)
                for c in tree.children[v]:
                    x = tokens[c]
                    wc = _ratio(w * t[x], s[x], one)
                    reach = sub(c, (*path, x), wc, reach)
                    if reach == 0:
                        return reach
                    w, t, s = self._update(w, t, s, x, one, wor)
            if v == 0:
                add_mass(out, 0, reach * t, problem.V)
                return 0 * reach
            add_mass(out, v, reach * w * t, problem.V)
            return reach * (one - w)

        sub(0, (), one, one)
        return out

    def sample(
        self, problem: BlockProblem, tokens: tuple[int, ...], rng: np.random.Generator
    ) -> tuple[int, int]:
        tree = problem.tree
        wor = tree.scheme == "wor"

        def run(v: int, path: tuple[int, ...], w: float) -> tuple[int, int] | None:
            t = _f64(problem.p(path))
            if tree.children[v]:
                s = _f64(problem.q(path))
                for c in tree.children[v]:
                    x = tokens[c]
                    got = run(c, (*path, x), _ratio(w * t[x], s[x], 1.0))
                    if got is not None:
                        return got
                    w, t, s = self._update(w, t, s, x, 1.0, wor)
            if v == 0 or rng.random() < w:
                return v, _categorical(rng, t)
            return None

        got = run(0, (), 1.0)
        assert got is not None  # the root always accepts
        return got


for _cls in (BlockVerification, MultiPath, TraversalVerification):
    BLOCK_RULES[_cls.name] = _cls
