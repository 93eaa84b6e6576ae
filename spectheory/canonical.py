r"""The canonical decomposition of multi-draft verifiers (Khisti et al., arXiv 2410.18234).

Every lossless verifier can be replaced, without losing acceptance, by two steps:

1. **importance-sampling selection**: given the draft tuple :math:`\bar x`, pick one drafted token
   :math:`Z \sim \beta(\cdot \mid \bar x)` (a distribution over the tokens of :math:`\bar x`); the
   selected token has the law :math:`r(y) = \sum_{\bar x} Q(\bar x)\, \beta(y \mid \bar x)`;
2. **single-draft speculative sampling** from :math:`r` to :math:`p`: accept :math:`Z` with
   probability :math:`\min(1, p(Z)/r(Z))`, else output a draw of the residual
   :math:`(p - r)_+ / \sum (p - r)_+`.

Step 2 accepts with probability :math:`\sum_y \min(p(y), r(y))` (the *two-step acceptance*), and

.. math:: \alpha^*(p, Q) = \max_\beta \sum_y \min\bigl(p(y), r_\beta(y)\bigr),

an LP in :math:`\beta` (Khisti et al.). A law :math:`r` is *achievable* by some
:math:`\beta` iff :math:`r(S) \ge Q(S^n)` for every :math:`S` (Hall's theorem / max-flow). For a
non-optimal :math:`\beta` the two-step acceptance only bounds :math:`\Pr(Y \in \bar x)` from below:
the residual draw may hit another draft (:func:`draft_hit_probability` computes it exactly).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ._validate import SpecTheoryInputError, as_distribution, broadcast_pair
from .result import Status
from .schemes import Scheme
from .tolerances import CERT_GAP_TOL, HIGHS_TOL
from .two_drafts import AcceptanceTest, _exact_vector, acceptance_is_one

__all__ = [
    "BETA_SUM_ATOL",
    "Selection",
    "achievable",
    "draft_hit_probability",
    "induced_law",
    "optimal_selection",
    "two_step_acceptance",
]

#: Allowed ``|sum_y beta(y | x) - 1|`` for a user-supplied selection rule.
BETA_SUM_ATOL: float = 1e-9

#: Largest ``T * V`` (draft token sets times vocabulary) for the dense selection table.
MAX_SELECTION_CELLS: int = 20_000_000

BetaLike = Callable[[np.ndarray], Any] | np.ndarray


# ---------------------------------------------------------------------- two-step acceptance
def two_step_acceptance(p: Any, r: Any) -> float | np.ndarray | Fraction:
    r"""Acceptance of single-draft speculative sampling from :math:`r` to :math:`p`:
    :math:`\sum_y \min(p(y), r(y)) = 1 - \mathrm{TV}(p, r)`.

    Parameters
    ----------
    p, r
        Target and selected-token law, ``(V,)`` or ``(B, V)``. Rational ``(V,)`` inputs give an
        exact :class:`fractions.Fraction`.

    Returns
    -------
    float, numpy.ndarray or Fraction
        One value per row.
    """
    pe, re_ = _exact_vector(p, "p"), _exact_vector(r, "r")
    pv = as_distribution(p, "p")
    rv = as_distribution(r, "r")
    if pv.shape[-1] != rv.shape[-1]:
        raise SpecTheoryInputError(
            f"argument 'r': vocabulary size {rv.shape[-1]} does not match p's V = {pv.shape[-1]}"
        )
    if pe is not None and re_ is not None:
        return sum((min(a, b) for a, b in zip(pe, re_, strict=True)), Fraction(0))
    out = np.sum(np.minimum(pv, rv), axis=-1)
    return float(out) if np.ndim(out) == 0 else out


# ---------------------------------------------------------------------- achievability
def achievable(r: Any, scheme: Scheme, *, atol: float | None = None) -> AcceptanceTest:
    r"""Whether the selected-token law ``r`` is achievable by some selection rule
    :math:`\beta(\cdot \mid \bar x)` under ``scheme``: :math:`r(S) \ge Q(S^n)` for all :math:`S`.

    Necessity: the selected token lies in :math:`S` whenever all drafts do. Sufficiency: Hall's
    theorem on the bipartite graph tuples :math:`\to` drafted tokens (max-flow min-cut), as in
    Khisti et al., arXiv 2410.18234. Equivalently :math:`\alpha^*(r, Q) = 1`, so this reuses
    :func:`spectheory.two_drafts.acceptance_is_one` (ratio-order prefixes for i.i.d. drafts, all
    subsets or the LP otherwise).

    Parameters
    ----------
    r
        Candidate law ``(V,)`` (rationals allowed for an exact answer with a rational ``q``; a
        scheme object always holds floats).
    scheme
        The draft scheme.
    atol
        Float tolerance; default :data:`spectheory.two_drafts.ACCEPT_ONE_ATOL`.

    Returns
    -------
    AcceptanceTest
        ``bool()`` is the answer; when false, ``witness`` is a set :math:`S` with
        :math:`r(S) < Q(S^n)` and ``margin`` :math:`= r(S) - Q(S^n) < 0`.
    """
    if not isinstance(scheme, Scheme):
        raise SpecTheoryInputError(
            f"argument 'scheme': expected a spectheory scheme, got {type(scheme).__name__}"
        )
    kw = {} if atol is None else {"atol": atol}
    try:
        return acceptance_is_one(r, scheme, None, **kw)
    except SpecTheoryInputError as exc:
        raise SpecTheoryInputError(str(exc).replace("argument 'p'", "argument 'r'")) from None


# ---------------------------------------------------------------------- the selection LP
@dataclass(frozen=True, eq=False)
class Selection:
    r"""An importance-sampling selection rule and its induced law.

    Attributes
    ----------
    sets
        Token sets of the draft tuples, ``(T, n)`` int64 padded with ``-1`` (the rule depends on the
        tuple only through its set, which loses nothing).
    mass
        :math:`Q(t)` per set, ``(T,)``.
    weights
        :math:`\beta(y \mid t)`, ``(T, V)``; each row is a distribution supported on the set.
    r
        Induced law of the selected token, :math:`r(y) = \sum_t Q(t) \beta(y \mid t)`.
    value
        Two-step acceptance :math:`\sum_y \min(p(y), r(y))`.
    witness
        Boolean mask :math:`H` from the LP duals; :math:`1 + p(H) - Q(H^n)` upper-bounds
        ``value``.
    status
        :attr:`Status.OPTIMAL` when ``value`` and the witness bound agree within ``CERT_GAP_TOL``.
    info
        ``gap``, ``dual_value``, solver name, ``time_s``.
    """

    sets: np.ndarray
    mass: np.ndarray
    weights: np.ndarray
    r: np.ndarray
    value: float
    witness: np.ndarray
    status: Status
    info: dict[str, Any] = field(default_factory=dict)

    def beta(self, drafts: Any) -> np.ndarray:
        r""":math:`\beta(\cdot \mid \bar x)` for one draft tuple ``drafts`` (token ids)."""
        key = sorted(set(int(x) for x in np.asarray(drafts).ravel()))
        for i, row in enumerate(self.sets):
            if sorted(int(x) for x in row if x >= 0) == key:
                return self.weights[i].copy()
        raise SpecTheoryInputError(
            f"argument 'drafts': token set {key} has probability 0 under the scheme"
        )


def _set_table(scheme: Scheme) -> tuple[np.ndarray, np.ndarray]:
    from .solvers.lp import merge_by_set

    tuples, probs = scheme.enumerate()
    keep = probs > 0
    return merge_by_set(tuples[keep], probs[keep])


def optimal_selection(p: Any, scheme: Scheme, *, normalize: bool = False) -> Selection:
    r"""Solve the importance-sampling LP of the canonical decomposition (small ``V``).

    .. math::

        \max_{\beta}\ \sum_y \min\bigl(p(y), r_\beta(y)\bigr), \qquad
        r_\beta(y) = \sum_{t} Q(t)\, \beta(y \mid t),\quad
        \beta(\cdot \mid t) \in \Delta(t),

    written with :math:`w(t, y) = Q(t)\beta(y \mid t) \ge 0`, :math:`\sum_{y \in t} w(t, y) = Q(t)`,
    and :math:`m_y \le p(y)`, :math:`m_y \le \sum_t w(t, y)`, maximising :math:`\sum_y m_y`
    (Khisti et al., arXiv 2410.18234). Its optimum equals :math:`\alpha^*(p, Q)`.
    Solved by HiGHS (highspy); a witness :math:`H` is rounded from the duals of
    :math:`m_y \le p(y)` and certifies the value through :math:`1 + p(H) - Q(H^n)`.

    Parameters
    ----------
    p
        Target ``(V,)``.
    scheme
        Any unbatched scheme whose tuples can be enumerated.
    normalize
        Rescale ``p`` to sum to 1.

    Returns
    -------
    Selection
        The rule (``weights``, ``beta(drafts)``), its law ``r`` and its two-step acceptance.
    """
    import highspy

    from .solvers.lp import _new_highs, witness_from_duals

    t0 = time.perf_counter()
    if not isinstance(scheme, Scheme):
        raise SpecTheoryInputError(
            f"argument 'scheme': expected a spectheory scheme, got {type(scheme).__name__}"
        )
    pv = as_distribution(p, "p", normalize=normalize, allow_batch=False)
    broadcast_pair(pv, scheme.batch_shape, scheme.V)
    scheme._check_unbatched("optimal_selection")
    sets, mass = _set_table(scheme)
    T, V = len(mass), scheme.V
    if T * V > MAX_SELECTION_CELLS:
        raise SpecTheoryInputError(
            f"argument 'scheme': {T} token sets x V = {V} exceeds MAX_SELECTION_CELLS = "
            f"{MAX_SELECTION_CELLS}; the selection LP is for small vocabularies"
        )
    ts, js = np.nonzero(sets >= 0)
    e_set, e_tok = ts.astype(np.int64), sets[ts, js].astype(np.int64)
    E = len(e_set)
    # columns: w (E), then m (V). rows: sets (T, equality), m <= p (V), m - r <= 0 (V).
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("primal_feasibility_tolerance", HIGHS_TOL)
    h.setOptionValue("dual_feasibility_tolerance", HIGHS_TOL)
    model = highspy.HighsLp()
    model.num_col_ = E + V
    model.num_row_ = T + 2 * V
    model.sense_ = highspy.ObjSense.kMaximize
    model.col_cost_ = np.concatenate([np.zeros(E), np.ones(V)])
    model.col_lower_ = np.zeros(E + V)
    model.col_upper_ = np.full(E + V, highspy.kHighsInf)
    model.row_lower_ = np.concatenate([mass, np.full(2 * V, -highspy.kHighsInf)])
    model.row_upper_ = np.concatenate([mass, pv, np.zeros(V)])
    starts = [0]
    idx: list[int] = []
    vals: list[float] = []
    for k in range(E):
        idx += [int(e_set[k]), T + V + int(e_tok[k])]
        vals += [1.0, -1.0]
        starts.append(len(idx))
    for y in range(V):
        idx += [T + y, T + V + y]
        vals += [1.0, 1.0]
        starts.append(len(idx))
    model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    model.a_matrix_.start_ = np.asarray(starts, dtype=np.int32)
    model.a_matrix_.index_ = np.asarray(idx, dtype=np.int32)
    model.a_matrix_.value_ = np.asarray(vals, dtype=np.float64)
    h.passModel(model)
    h.run()
    ok = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    info: dict[str, Any] = {"solver": f"HiGHS {h.version()} (highspy)"}
    if ok:
        sol = h.getSolution()
        w = np.maximum(np.asarray(sol.col_value[:E], dtype=np.float64), 0.0)
        a = np.abs(np.asarray(sol.row_dual[T : T + V], dtype=np.float64))
    else:  # pragma: no cover - solver fault: fall back to "select the first draft"
        w = np.zeros(E)
        a = np.zeros(V)
    W = np.zeros((T, V))
    W[e_set, e_tok] = w
    rows = W.sum(axis=1)
    first = sets[:, 0]
    for t in np.flatnonzero(rows <= 0):
        W[t, first[t]] = 1.0
    rows = W.sum(axis=1)
    beta = W / rows[:, None]
    r = mass @ beta
    value = math.fsum(np.minimum(pv, r).tolist())
    witness, dual_value = witness_from_duals(a, pv, scheme)
    gap = dual_value - value
    info.update(dual_value=dual_value, gap=gap, time_s=time.perf_counter() - t0)
    status = Status.OPTIMAL if ok and abs(gap) <= CERT_GAP_TOL else (
        Status.INACCURATE if ok else Status.FAILED
    )
    return Selection(sets, mass, beta, r, value, witness, status, info)


# ---------------------------------------------------------------------- arbitrary rules
def _beta_table(scheme: Scheme, beta: BetaLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate ``beta`` on every enumerated ordered tuple: ``(tuples, probs, B (T, V))``."""
    tuples, probs = scheme.enumerate()
    V = scheme.V
    if callable(beta):
        Bm = np.array([np.asarray(beta(t), dtype=np.float64) for t in tuples])
    else:
        Bm = np.asarray(beta, dtype=np.float64)
    if Bm.shape != (len(tuples), V):
        raise SpecTheoryInputError(
            f"argument 'beta': expected shape ({len(tuples)}, {V}) (one row per enumerated tuple), "
            f"got {Bm.shape}"
        )
    inside = np.zeros((len(tuples), V), dtype=bool)
    np.put_along_axis(inside, tuples, True, axis=1)
    if np.any(Bm < 0) or not np.all(np.isfinite(Bm)):
        raise SpecTheoryInputError("argument 'beta': weights must be finite and non-negative")
    if np.any(Bm[~inside] > 0):
        t = int(np.argmax(np.any(Bm * ~inside > 0, axis=1)))
        raise SpecTheoryInputError(
            f"argument 'beta', row {t}: puts mass on a token not among the drafts "
            f"{tuples[t].tolist()}"
        )
    off = np.abs(Bm.sum(axis=1) - 1.0)
    if np.any(off > BETA_SUM_ATOL):
        t = int(np.argmax(off))
        raise SpecTheoryInputError(
            f"argument 'beta', row {t}: weights sum to {Bm[t].sum()!r}, not 1"
        )
    return tuples, probs, Bm


def induced_law(scheme: Scheme, beta: BetaLike) -> np.ndarray:
    r"""Law of the selected token :math:`r(y) = \sum_{\bar x} Q(\bar x)\beta(y \mid \bar x)`.

    Parameters
    ----------
    scheme
        Unbatched scheme (tuples are enumerated).
    beta
        Callable ``beta(tuple) -> (V,)`` distribution over the tuple's tokens, or an array
        ``(T, V)`` aligned with ``scheme.enumerate()``.
    """
    _, probs, Bm = _beta_table(scheme, beta)
    return probs @ Bm


def draft_hit_probability(p: Any, scheme: Scheme, beta: BetaLike) -> float:
    r"""Exact :math:`\Pr(Y \in \bar x)` of the two-step verifier with selection rule ``beta``.

    With :math:`a(z) = \min(1, p(z)/r(z))` and residual
    :math:`\rho = (p - r)_+ / \sum (p - r)_+`:

    .. math::

        \Pr(Y \in \bar x) = \sum_{\bar x} Q(\bar x) \sum_z \beta(z \mid \bar x)
            \Bigl[a(z) + (1 - a(z))\, \rho(\mathrm{set}(\bar x))\Bigr]
        \ \ge\ \sum_y \min(p(y), r(y)).

    The inequality is strict when a rejected draw of the residual can land on another draft
    (Khisti et al., arXiv 2410.18234, discuss the same gap); it is an equality for an optimal
    :math:`\beta`.
    """
    pv = as_distribution(p, "p", allow_batch=False)
    broadcast_pair(pv, scheme.batch_shape, scheme.V)
    tuples, probs, Bm = _beta_table(scheme, beta)
    r = probs @ Bm
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # p/r = inf -> 1
        acc = np.where(r > 0, np.minimum(1.0, pv / np.where(r > 0, r, 1.0)), 1.0)
    res = np.maximum(pv - r, 0.0)
    tot = res.sum()
    rho = res / tot if tot > 0 else np.zeros_like(res)
    inside = np.zeros((len(tuples), scheme.V), dtype=bool)
    np.put_along_axis(inside, tuples, True, axis=1)
    hit_res = inside.astype(np.float64) @ rho  # rho(set(x)) per tuple
    per_tuple = Bm @ acc + (Bm @ (1.0 - acc)) * hit_res
    return float(probs @ per_tuple)
