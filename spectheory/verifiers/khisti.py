r"""Khisti et al.'s weighted importance-sampling verifier (arXiv 2410.18234).

The rule follows the canonical decomposition (:mod:`spectheory.canonical`): select one draft, then
run single-draft speculative sampling from the selected token's law :math:`r` to the target
:math:`p`.

**Two drafts** :math:`(a, b) \sim q_a \otimes q_b` (identical or different models). If
:math:`a = b` select it; otherwise select :math:`a` with probability :math:`w(a, b)` and :math:`b`
with :math:`1 - w(a, b)`. The selected token has the law

.. math::

    r(y) = q_a(y) q_b(y) + \sum_{b \ne y} q_a(y) q_b(b)\, w(y, b)
         + \sum_{a \ne y} q_a(a) q_b(y)\, \bigl(1 - w(a, y)\bigr),

and the weights maximise the two-step acceptance :math:`\sum_y \min(p(y), r(y))`, an LP. The
*s-truncated* LP ranks tokens by :math:`p(y) - q_a(y) q_b(y)` descending, keeps LP weights only for
pairs inside the top :math:`s` tokens, and lets the higher-ranked token win every other pair, so the
LP has :math:`s(s-1) + s` variables whatever :math:`V`. With :math:`s = V` it is the full selection
LP, whose optimum is :math:`\alpha^*` for two drafts (canonical decomposition theorem).

**K > 2 drafts**: a tournament of pairs. The champion of drafts :math:`1..k-1` (law
:math:`r_{k-1}`, independent of draft :math:`k`) meets draft :math:`k \sim q_k` in a pair stage
whose weights solve the truncated LP for :math:`(r_{k-1}, q_k)`; :math:`r_K` is the final
selected law.

Exact acceptance (small :math:`V`): enumerate the draft tuples and add the chance that a rejected
draw of the residual hits another draft (:func:`spectheory.canonical.draft_hit_probability`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._validate import SpecTheoryInputError, as_distribution, check_n, check_rng
from ..schemes import IID, Independent, Scheme
from ..tolerances import HIGHS_TOL
from .base import Verifier, register
from .sd import categorical, check_drafts

__all__ = [
    "DEFAULT_TRUNCATION",
    "KhistiDesign",
    "KhistiIS",
    "PairStage",
    "optimal_iid_pair",
    "pair_lp",
]

#: Default truncation ``s`` of the pair LP (Khisti et al. use s = 5..15).
DEFAULT_TRUNCATION: int = 8


@dataclass(frozen=True, eq=False)
class PairStage:
    r"""One pair stage: champion law ``qa``, challenger law ``qb``, winner law ``r``.

    Attributes
    ----------
    pos
        Rank position of every token (0 = highest, by :math:`p - q_a q_b` descending).
    top
        The truncated token set (sorted ids); ``W_top[i, j]`` is the probability that champion
        ``top[i]`` beats challenger ``top[j]``. Outside ``top`` the higher-ranked token wins.
    """

    qa: np.ndarray
    qb: np.ndarray
    pos: np.ndarray
    top: np.ndarray
    W_top: np.ndarray
    r: np.ndarray

    def weight(self, a: int, b: int) -> float:
        """Probability that champion ``a`` beats challenger ``b`` (1 when ``a == b``)."""
        if a == b:
            return 1.0
        i = int(np.searchsorted(self.top, a))
        j = int(np.searchsorted(self.top, b))
        if i < len(self.top) and j < len(self.top) and self.top[i] == a and self.top[j] == b:
            return float(self.W_top[i, j])
        return float(self.pos[a] < self.pos[b])

    def dense_weights(self) -> np.ndarray:
        """All weights as a ``(V, V)`` matrix (small ``V``; diagonal 1)."""
        V = len(self.qa)
        return np.array([[self.weight(a, b) for b in range(V)] for a in range(V)])


def _rank_rule_law(qa: np.ndarray, qb: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Winner law when the higher-ranked token always wins, in O(V) by suffix sums."""
    qa_r, qb_r = qa[rank], qb[rank]
    below_a = np.concatenate([np.cumsum(qa_r[::-1])[::-1][1:], [0.0]])  # mass ranked lower
    below_b = np.concatenate([np.cumsum(qb_r[::-1])[::-1][1:], [0.0]])
    out = np.empty(len(qa))
    out[rank] = qa_r * qb_r + qa_r * below_b + qb_r * below_a
    return out


def pair_lp(p: np.ndarray, qa: np.ndarray, qb: np.ndarray, s: int) -> PairStage:
    r"""Solve the s-truncated pair LP (Khisti et al., arXiv 2410.18234) for drafts
    :math:`(a, b) \sim q_a \otimes q_b`.

    Tokens are ranked by :math:`p(y) - q_a(y) q_b(y)` descending (ties: smaller index first);
    pairs with a token outside the top ``s`` go to the higher-ranked token; the weights of pairs
    inside the top ``s`` maximise :math:`\sum_y \min(p(y), r(y))` (HiGHS through scipy).
    Cost: :math:`O(V \log V)` plus an LP with :math:`s(s-1) + s` variables.

    Parameters
    ----------
    p, qa, qb
        Target, champion law and challenger law, ``(V,)`` float64 distributions.
    s
        Truncation (``1 <= s``; values above ``V`` mean ``V``).
    """
    from scipy.optimize import linprog

    V = len(p)
    s = min(int(s), V)
    rank = np.argsort(-(p - qa * qb), kind="stable")
    pos = np.empty(V, dtype=np.int64)
    pos[rank] = np.arange(V)
    top = np.sort(rank[:s])
    r = _rank_rule_law(qa, qb, rank)
    W_top = (pos[top][:, None] < pos[top][None, :]).astype(np.float64)
    pairs = [(i, j) for i in range(s) for j in range(s) if i != j]
    if pairs:
        # base law: every free weight at 0 (the challenger wins every pair inside the top set)
        base = r.copy()
        for i, j in pairs:
            if W_top[i, j] > 0:
                m = qa[top[i]] * qb[top[j]]
                base[top[i]] -= m
                base[top[j]] += m
        nw = len(pairs)
        # Variables: the pair masses u_k = qa(i) qb(j) w_k moved to the champion (bounds
        # [0, qa(i) qb(j)]), then m_y; constraint coefficients are +-1, so HiGHS's absolute
        # tolerances act on probability masses whatever the size of the pair masses (with w as
        # the variables, pairs of mass 1e-18 were below the solver's tolerance, issue 17).
        A = np.zeros((s, nw + s))
        coef = np.array([qa[top[i]] * qb[top[j]] for i, j in pairs])
        for k, (i, j) in enumerate(pairs):
            A[i, k] -= 1.0  # u adds to r(top[i]) ...
            A[j, k] += 1.0  # ... and removes from r(top[j])
        A[np.arange(s), nw + np.arange(s)] = 1.0  # m_y - (r(y) - base(y)) <= base(y)
        c = np.concatenate([np.zeros(nw), -np.ones(s)])
        bounds = [(0.0, float(m)) for m in coef] + [(0.0, float(p[y])) for y in top]
        sol = linprog(
            c, A_ub=A, b_ub=base[top], bounds=bounds, method="highs",
            options={"primal_feasibility_tolerance": HIGHS_TOL,
                     "dual_feasibility_tolerance": HIGHS_TOL},
        )
        if sol.status == 0:
            u = np.clip(sol.x[:nw], 0.0, coef)
            with np.errstate(divide="ignore", invalid="ignore"):
                w = np.where(coef > 0, np.clip(u / np.where(coef > 0, coef, 1.0), 0.0, 1.0), 0.5)
            r = base.copy()
            for k, (i, j) in enumerate(pairs):
                W_top[i, j] = w[k]
                r[top[i]] += u[k]
                r[top[j]] -= u[k]
        # else: solver fault -- keep the ranking rule (still lossless)
    return PairStage(qa, qb, pos, top, W_top, np.maximum(r, 0.0))


def optimal_iid_pair(p: np.ndarray, q: np.ndarray) -> PairStage:
    r"""An optimal solution of the full pair LP for two i.i.d. drafts, in closed form.

    The max-position layout of the optimal verifier (:func:`spectheory.verifiers.optimal.layout_rule`
    with ``n = 2``) is a pair rule: draft ``a`` beats draft ``b`` with the probability
    :math:`w(a, b)` that its position is the larger one, computed exactly (piecewise-linear CDFs,
    Gauss-Legendre quadrature), and its selected law attains :math:`lpha^*`. Used for ``s >= V``
    and identical draft laws instead of the LP, whose solver tolerances left the two-step acceptance
    up to ~1e-9 below :math:`lpha^*` (issue 17). Cost: :math:`V^2` small quadratures.
    """
    from .optimal import _layout_rule_checked

    V = len(p)
    rule = _layout_rule_checked(p, q, 2)
    rank = np.argsort(-(p - q * q), kind="stable")
    pos = np.empty(V, dtype=np.int64)
    pos[rank] = np.arange(V)
    W = (pos[:, None] < pos[None, :]).astype(np.float64)  # unreachable pairs: ranking rule
    live = np.flatnonzero(q > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        for ia, a in enumerate(live):
            for b in live[ia + 1 :]:
                w = float(rule.selection_probs(np.array([a, b]))[0])
                # A token whose slot is narrower than the float spacing of positions has no
                # density (its q is below ~1e-16 of its position): keep the ranking rule there
                # (lossless; that pair carries at most q(a) q(b) < 1e-16 q(b) of mass).
                if np.isfinite(w):
                    W[a, b], W[b, a] = min(max(w, 0.0), 1.0), 1.0 - min(max(w, 0.0), 1.0)
    np.fill_diagonal(W, 1.0)
    # r(y) = q(y)^2 + q(y) sum_{b != y} q(b) [w(y, b) + 1 - w(b, y)]  (positive terms only)
    off = W * (1.0 - np.eye(V))
    r = q * q + q * ((off + (1.0 - off.T) * (1.0 - np.eye(V))) @ q)
    return PairStage(q, q, pos, np.arange(V), W, r)


@dataclass(frozen=True, eq=False)
class KhistiDesign:
    """The tournament of pair stages for one position and its final selected law ``r``."""

    p: np.ndarray
    qs: tuple[np.ndarray, ...]
    stages: tuple[PairStage, ...]

    @property
    def r(self) -> np.ndarray:
        """Law of the selected token."""
        return self.stages[-1].r if self.stages else self.qs[0]

    @property
    def two_step_acceptance(self) -> float:
        r""":math:`\sum_y \min(p(y), r(y))` (a lower bound on the exact acceptance)."""
        return float(np.sum(np.minimum(self.p, self.r)))

    def beta(self, drafts: Any) -> np.ndarray:
        r"""Selection distribution :math:`\beta(\cdot \mid \bar x)` of the tournament."""
        d = np.asarray(drafts, dtype=np.int64)
        V = len(self.p)
        c = np.zeros(V)
        c[d[0]] = 1.0
        for st, b in zip(self.stages, d[1:], strict=True):
            new = np.zeros(V)
            for a in np.flatnonzero(c):
                if a == b:
                    new[a] += c[a]
                else:
                    w = st.weight(int(a), int(b))
                    new[a] += c[a] * w
                    new[b] += c[a] * (1.0 - w)
            c = new
        return c

    def select(self, drafts: np.ndarray, rng: np.random.Generator) -> int:
        """Run the tournament on ``drafts`` with random tie-breaks from ``rng``."""
        z = int(drafts[0])
        for st, b in zip(self.stages, drafts[1:], strict=True):
            b = int(b)
            if b != z and rng.random() >= st.weight(z, b):
                z = b
        return z


def _as_draft_laws(q: Any, n: int) -> tuple[np.ndarray, ...]:
    """``q`` of shape ``(V,)`` (n identical drafts) or ``(n, V)`` (one model per draft)."""
    nn = check_n(n)
    if isinstance(q, IID):
        return (np.asarray(q.q),) * q.n
    if isinstance(q, Independent):
        return tuple(np.asarray(x) for x in q.qs)
    try:
        ndim = np.ndim(np.asarray(q, dtype=object))
    except (TypeError, ValueError):  # ragged rows
        ndim = -1
    if ndim not in (1, 2):
        raise SpecTheoryInputError(
            f"argument 'q': expected shape (V,) or (n, V) of probabilities, got {np.shape(q)!r}"
            if ndim > 2 else "argument 'q': expected shape (V,) or (n, V) (rows of equal length)"
        )
    if ndim == 2:
        rows = list(q)
        if len(rows) != nn:
            raise SpecTheoryInputError(
                f"argument 'q': {len(rows)} rows (one per draft model) but n = {nn}"
            )
        laws = tuple(as_distribution(r, f"q[{j}]", allow_batch=False) for j, r in enumerate(rows))
        for j, a in enumerate(laws[1:], start=1):
            if a.shape != laws[0].shape:
                raise SpecTheoryInputError(
                    f"argument 'q[{j}]': shape {a.shape} differs from q[0] shape {laws[0].shape}"
                )
        return laws
    return (as_distribution(q, "q", allow_batch=False),) * nn


@register
class KhistiIS(Verifier):
    r"""Khisti et al.'s weighted importance-sampling verifier with the s-truncated pair LP
    (arXiv 2410.18234); ``K > 2`` drafts by a tournament of pairs.

    Parameters
    ----------
    s
        Truncation of the pair LP (default :data:`DEFAULT_TRUNCATION`); ``s >= V`` solves the full
        pair LP, which attains :math:`\alpha^*` for two drafts. For two identical draft laws and
        ``s >= V`` the weights are the exact optimum of :func:`optimal_iid_pair` (no LP, so no
        solver tolerance: the acceptance equals :math:`\alpha^*` to rounding); for two different
        laws the LP is solved in pair-mass variables with HiGHS tolerance ``HIGHS_TOL``.

    Notes
    -----
    ``q`` is ``(V,)`` for ``n`` identical drafts or ``(n, V)`` (one row per draft model) for
    independent drafts from different models; one position at a time (no batches).
    """

    name: ClassVar[str] = "khisti"
    lossless: ClassVar[bool] = True

    def __init__(self, s: int = DEFAULT_TRUNCATION) -> None:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise SpecTheoryInputError(f"argument 's': must be an integer >= 1, got {s!r}")
        self.s = int(s)
        self._cache: tuple[bytes, KhistiDesign] | None = None

    def scheme(self, q: Any, n: int) -> Scheme:
        laws = _as_draft_laws(q, n)
        if np.ndim(np.asarray(q, dtype=object)) == 2 or isinstance(q, Independent):
            return Independent(list(laws))
        return IID(laws[0], len(laws))

    def design(self, p: Any, q: Any, n: int) -> KhistiDesign:
        """Solve the pair stages for target ``p`` and draft laws ``q`` (the last one is cached)."""
        pv = as_distribution(p, "p", allow_batch=False)
        laws = _as_draft_laws(q, n)
        if laws[0].shape != pv.shape:
            raise SpecTheoryInputError(
                f"argument 'q': vocabulary size {laws[0].shape[-1]} does not match p's "
                f"V = {pv.shape[-1]}"
            )
        key = pv.tobytes() + b"|" + b"|".join(x.tobytes() for x in laws) + bytes([self.s % 256])
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        stages = []
        champ = laws[0]
        for qb in laws[1:]:
            if len(laws) == 2 and self.s >= len(pv) and np.array_equal(champ, qb):
                st = optimal_iid_pair(pv, qb)  # exact optimum of the full LP (issue 17)
            else:
                st = pair_lp(pv, champ, qb, self.s)
            stages.append(st)
            champ = st.r
        d = KhistiDesign(pv, laws, tuple(stages))
        self._cache = (key, d)
        return d

    def two_step_acceptance(self, p: Any, q: Any, n: int) -> float:
        r""":math:`\sum_y \min(p(y), r(y))` of the selected law (a lower bound on acceptance)."""
        return self.design(p, q, n).two_step_acceptance

    def _tables(self, p: Any, q: Any, n: int) -> tuple[Any, ...]:
        d = self.design(p, q, n)
        sch = self.scheme(q, n)
        tuples, probs = sch.enumerate()
        Bm = np.array([d.beta(t) for t in tuples])
        r = probs @ Bm
        pv = d.p
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = np.where(r > 0, np.minimum(1.0, pv / np.where(r > 0, r, 1.0)), 1.0)
        res = np.maximum(pv - r, 0.0)
        tot = res.sum()
        rho = res / tot if tot > 0 else np.zeros_like(res)
        inside = np.zeros((len(tuples), len(pv)), dtype=bool)
        np.put_along_axis(inside, tuples, True, axis=1)
        return tuples, probs, Bm, acc, rho, inside

    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        r""":math:`a(y) = \Pr(Y = y,\ Y \in \bar x)`, exact by enumerating draft tuples:
        :math:`\sum_{\bar x} Q(\bar x) \sum_z \beta(z|\bar x)[a(z) 1_{y=z} + (1-a(z))\rho(y)
        1_{y \in \bar x}]`."""
        _, probs, Bm, acc, rho, inside = self._tables(p, q, n)
        direct = probs @ (Bm * acc[None, :])
        rejected = Bm @ (1.0 - acc)  # per tuple
        via_res = (probs * rejected) @ (inside * rho[None, :])
        return direct + via_res

    def acceptance(self, p: Any, q: Any, n: int) -> float:
        r"""Exact :math:`\Pr(Y \in \bar x)` on small ``V`` (enumeration of draft tuples)."""
        return float(np.sum(self.accepted_mass(p, q, n)))

    def output_law(self, p: Any, q: Any, n: int) -> np.ndarray:
        """Exact law of the output token (enumeration); equals ``p`` (the rule is lossless)."""
        _, probs, Bm, acc, rho, _ = self._tables(p, q, n)
        direct = probs @ (Bm * acc[None, :])
        return direct + float(probs @ (Bm @ (1.0 - acc))) * rho

    def sample(
        self, p: Any, q: Any, drafts: Any, rng: np.random.Generator
    ) -> tuple[int, bool]:
        """Verify one draft tuple: tournament selection, then speculative sampling from ``r``."""
        check_rng(rng)
        pv = as_distribution(p, "p", allow_batch=False)
        d = check_drafts(drafts, None, len(pv))
        n = len(d)
        des = self.design(pv, q, n)
        for i, x in enumerate(d.tolist()):
            if des.qs[i][x] <= 0:
                raise SpecTheoryInputError(
                    f"argument 'drafts': draft {i} (token {x}) has zero probability under its "
                    "draft model"
                )
        z = des.select(d, rng)
        r = des.r
        if r[z] > 0 and rng.random() * r[z] < pv[z]:
            return z, True
        res = np.maximum(pv - r, 0.0)
        if res.sum() <= 0:  # r == p up to rounding: nothing to resample, keep the draft
            return z, True
        y = categorical(rng, res)
        return y, bool(np.any(d == y))

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        pv = as_distribution(p, "p", allow_batch=False)
        d = check_drafts(drafts, None, len(pv))
        des = self.design(pv, q, len(d))
        for i, x in enumerate(d.tolist()):
            if des.qs[i][x] <= 0:
                raise SpecTheoryInputError(
                    f"argument 'drafts': draft {i} (token {x}) has zero probability under its "
                    "draft model"
                )
        beta = des.beta(d)
        r = des.r
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(r > 0, np.minimum(1.0, pv / np.where(r > 0, r, 1.0)), 0.0)
        res = np.maximum(pv - r, 0.0)
        tot = res.sum()
        acc = beta * a
        miss = float(np.sum(beta * (1.0 - a)))
        rej = np.zeros(len(pv))
        if tot <= 0:  # the sampler keeps the selected draft
            acc = acc + beta * (1.0 - a)
        else:
            law = miss * (res / tot)
            drafted = np.zeros(len(pv), dtype=bool)
            drafted[d] = True
            acc = acc + np.where(drafted, law, 0.0)
            rej = np.where(drafted, 0.0, law)
        return acc, rej
