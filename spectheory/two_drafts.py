r"""Two identical drafts and the acceptance-equals-one condition (Khisti et al., arXiv 2410.18234).

For two i.i.d. drafts from :math:`q` the optimal acceptance has the closed form (Khisti et al.,
arXiv 2410.18234)

.. math::

    \alpha^*(p, q) = \min_{S \subseteq \Omega}
        \Bigl[\, p(S) + q(S^c)^2 + 2\, q(S)\, q(S^c) \Bigr],

which is the subset form :math:`\min_S [1 + p(S) - q(S)^2]` of the transport dual (Hu et al.,
arXiv 2502.18779) written without the cancellation in :math:`1 - q(S)^2`. Some minimiser is a prefix
of the tokens sorted by :math:`p(y)/q(y)` ascending (sorted-prefix theorem), so one sort suffices:
:math:`O(V \log V)`.

The optimal acceptance equals one iff :math:`p(S) \ge Q(S^n)` for every :math:`S`; for :math:`n`
i.i.d. drafts :math:`Q(S^n) = q(S)^n` and the worst :math:`S` is again a ratio-order prefix, for
independent drafts from different models :math:`Q(S^n) = \prod_j q_j(S)` (no single order works).

Float tolerance
---------------
With float inputs the condition is decided as ``min_S [p(S) - Q(S^n)] >= -atol`` with
``atol = ACCEPT_ONE_ATOL`` (``1e-12``) by default: prefix sums of ``V`` float64 numbers carry an
error of order ``V * 2**-53``, far below this for vocabularies up to ~10^4. With rational inputs
(:class:`fractions.Fraction`, Python ``int`` or sympy ``Rational``) every comparison is exact and
boundary cases such as :math:`p(S) = q(S)^2` are decided exactly (the tolerance is not used).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ._validate import SpecTheoryInputError, as_distribution, check_n
from .result import Result, Status
from .schemes import IID, Independent, Scheme
from .tolerances import MAX_SUBSETS_V

__all__ = [
    "ACCEPT_ONE_ATOL",
    "SCREEN_MARGIN",
    "AcceptanceOneRegion",
    "AcceptanceTest",
    "acceptance_is_one",
    "acceptance_one_region",
    "optimal_acceptance",
]

#: Default float tolerance of :func:`acceptance_is_one`: the condition holds when
#: ``min_S [p(S) - Q(S^n)] >= -ACCEPT_ONE_ATOL``.
ACCEPT_ONE_ATOL: float = 1e-12

#: In the exact brute-force path for independent drafts, subsets whose float64 value
#: ``p(S) - Q(S^n)`` is above this margin are certainly positive in exact arithmetic (float error
#: is below ``1e-13`` for ``V <= MAX_SUBSETS_V``); the others are re-checked with Fractions.
SCREEN_MARGIN: float = 1e-9


# ---------------------------------------------------------------------- exact input helpers
def _is_rational_scalar(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, (int, np.integer, Fraction)):
        return True
    mod = type(x).__module__ or ""
    if mod.startswith("sympy"):
        return bool(getattr(x, "is_Rational", False))
    return False


def _to_fraction(x: Any) -> Fraction:
    if isinstance(x, Fraction):
        return x
    if isinstance(x, (int, np.integer)):
        return Fraction(int(x))
    return Fraction(int(x.p), int(x.q))  # sympy Rational


def _exact_vector(x: Any, name: str) -> list[Fraction] | None:
    """Return ``x`` as a list of Fractions if every entry is rational (int / Fraction / sympy
    Rational) and it is a valid distribution in exact arithmetic; ``None`` for float input."""
    if isinstance(x, np.ndarray) and x.dtype != object:
        return None
    if not isinstance(x, (Sequence, np.ndarray)) or isinstance(x, (str, bytes)):
        return None
    items = list(x)
    if not items or not all(_is_rational_scalar(e) for e in items):
        return None
    if all(isinstance(e, (int, np.integer)) for e in items) and sum(int(e) for e in items) != 1:
        return None  # plain integer lists that are not one-hot: let the float validator explain
    fr = [_to_fraction(e) for e in items]
    for j, e in enumerate(fr):
        if e < 0:
            raise SpecTheoryInputError(f"argument {name!r}: entry {j} is negative ({e})")
    total = sum(fr, Fraction(0))
    if total != 1:
        raise SpecTheoryInputError(
            f"argument {name!r}: entries sum to {total}, not 1 (exact rational input: no "
            "tolerance applies)"
        )
    return fr


def _ratio_order_exact(p: Sequence[Fraction], q: Sequence[Fraction]) -> list[int]:
    """Ascending ``p/q`` (``q = 0`` last), stable on ties, in exact arithmetic."""
    finite = [i for i in range(len(p)) if q[i] > 0]
    infinite = [i for i in range(len(p)) if q[i] == 0]
    finite.sort(key=lambda i: p[i] / q[i])
    return finite + infinite


def _ratio_order(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(q > 0, p / np.where(q > 0, q, 1.0), np.inf)
    # Ties may be broken in any order: along a run of equal ratios the prefix value is concave in
    # the added q-mass, so both ends of the run are prefixes of every tie-breaking.
    return np.argsort(r, axis=-1)


# ---------------------------------------------------------------------- closed form
def optimal_acceptance(p: Any, q: Any, *, normalize: bool = False) -> Result:
    r"""Optimal acceptance of two i.i.d. drafts from ``q`` by Khisti et al.'s closed form.

    .. math::

        \alpha^* = \min_{S \subseteq \Omega}
            \bigl[p(S) + q(S^c)^2 + 2 q(S) q(S^c)\bigr]

    (Khisti et al., arXiv 2410.18234). The minimum is taken over the :math:`V + 1`
    prefixes of the ratio order :math:`p(y)/q(y)` ascending (``q = 0`` last), which contain a
    minimiser (sorted-prefix theorem, Hu et al., arXiv 2502.18779): :math:`O(V \log V)`.
    :math:`q(S^c)` is a suffix sum of the sorted ``q`` (never ``1 - q(S)``).

    Parameters
    ----------
    p, q
        Target and draft distributions, ``(V,)`` or batches ``(B, V)`` (a single row broadcasts).
        Rational entries (Fraction, int, sympy Rational) are also accepted; the exact value is then
        added as ``info["exact_value"]`` (a :class:`fractions.Fraction`).
    normalize
        Rescale rows to sum to 1 (never done unless asked).

    Returns
    -------
    Result
        ``value`` :math:`\alpha^*`, ``witness`` the minimising :math:`S` (boolean mask), ``method``
        ``"two_drafts"``, ``scheme`` ``"iid"``; equal to
        ``spectheory.optimal_acceptance(p, IID(q, 2))``.

    Examples
    --------
    >>> r = optimal_acceptance([0.6, 0.3, 0.1], [0.2, 0.3, 0.5])
    >>> round(r.value, 12), r.witness_tokens().tolist()
    (0.76, [1, 2])
    """
    t0 = time.perf_counter()
    pe = _exact_vector(p, "p") if not normalize else None
    qe = _exact_vector(q, "q") if not normalize else None
    pv = as_distribution(p, "p", normalize=normalize)
    qv = as_distribution(q, "q", normalize=normalize)
    if pv.shape[-1] != qv.shape[-1]:
        raise SpecTheoryInputError(
            f"argument 'p': vocabulary size {pv.shape[-1]} does not match q's V = {qv.shape[-1]}"
        )
    if pv.ndim == 2 and qv.ndim == 2 and pv.shape[0] != qv.shape[0]:
        raise SpecTheoryInputError(
            f"argument 'p': batch size {pv.shape[0]} does not match q's batch size {qv.shape[0]}"
        )
    single = pv.ndim == 1 and qv.ndim == 1
    B = max(np.atleast_2d(pv).shape[0], np.atleast_2d(qv).shape[0])
    V = pv.shape[-1]
    p2 = np.broadcast_to(np.atleast_2d(pv), (B, V))
    q2 = np.broadcast_to(np.atleast_2d(qv), (B, V))
    order = _ratio_order(p2, q2)
    ps = np.take_along_axis(p2, order, axis=1)
    qs = np.take_along_axis(q2, order, axis=1)
    zero = np.zeros((B, 1))
    P = np.concatenate([zero, np.cumsum(ps, axis=1)], axis=1)  # p(S_k), k = 0..V
    S_in = np.concatenate([zero, np.cumsum(qs, axis=1)], axis=1)  # q(S_k)
    suffix = np.flip(np.cumsum(np.flip(qs, axis=1), axis=1), axis=1)
    S_out = np.concatenate([suffix, zero], axis=1)  # q(S_k^c) as a suffix sum
    vals = P + S_out**2 + 2.0 * S_in * S_out
    k = np.argmin(vals, axis=1)
    value = vals[np.arange(B), k]
    mask = np.zeros((B, V), dtype=bool)
    np.put_along_axis(mask, order, np.arange(V)[None, :] < k[:, None], axis=1)
    info: dict[str, Any] = {
        "error_bound": float(4 * V * np.finfo(np.float64).eps),
        "formula": "min_S p(S) + q(S^c)^2 + 2 q(S) q(S^c) (Khisti et al., arXiv 2410.18234)",
    }
    if single and pe is not None and qe is not None:
        exact_val, exact_S = _closed_form_exact(pe, qe)
        info["exact_value"] = exact_val
        info["error_bound"] = 0.0
        mask = np.zeros((1, V), dtype=bool)
        mask[0, exact_S] = True
        value = np.array([float(exact_val)])
    info["time_s"] = time.perf_counter() - t0
    return Result.from_rows(
        value,
        mask,
        single=single,
        status=Status.OPTIMAL,
        method="two_drafts",
        scheme="iid",
        info=info,
    )


def _closed_form_exact(p: list[Fraction], q: list[Fraction]) -> tuple[Fraction, list[int]]:
    order = _ratio_order_exact(p, q)
    best, best_k = Fraction(1), 0
    pin, qin = Fraction(0), Fraction(0)
    for k, i in enumerate(order, start=1):
        pin += p[i]
        qin += q[i]
        qout = 1 - qin
        v = pin + qout * qout + 2 * qin * qout
        if v < best:
            best, best_k = v, k
    return best, sorted(order[:best_k])


# ---------------------------------------------------------------------- alpha* = 1
@dataclass(frozen=True)
class AcceptanceTest:
    r"""Answer of :func:`acceptance_is_one`; ``bool(test)`` is the answer.

    Attributes
    ----------
    holds
        Whether :math:`p(S) \ge Q(S^n)` for every :math:`S` (so :math:`\alpha^* = 1`).
    witness
        When the condition fails: boolean mask of a subset :math:`S` with :math:`p(S) < Q(S^n)`
        (the most violated one found; for i.i.d. drafts the most violated of all). ``None`` when
        it holds.
    margin
        :math:`\min_S [p(S) - Q(S^n)] = \alpha^* - 1` evaluated at ``witness`` (negative when the
        condition fails, ``0`` when it holds, attained by :math:`S = \emptyset`). A
        :class:`fractions.Fraction` on the exact path.
    p_S, Q_S
        :math:`p(S)` and :math:`Q(S^n)` of the witness (``None`` when it holds).
    exact
        True when decided in exact rational arithmetic.
    atol
        Float tolerance used (``None`` on the exact path).
    method
        ``"prefix"`` (ratio-order prefixes), ``"subsets"`` (all :math:`2^V` sets) or ``"solver"``
        (:func:`spectheory.optimal_acceptance`).
    """

    holds: bool
    witness: np.ndarray | None
    margin: float | Fraction
    p_S: float | Fraction | None = None
    Q_S: float | Fraction | None = None
    exact: bool = False
    atol: float | None = None
    method: str = "prefix"
    info: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.holds

    def witness_tokens(self) -> list[int]:
        """Token ids of the violating subset (empty when the condition holds)."""
        return [] if self.witness is None else np.flatnonzero(self.witness).tolist()


def _draft_rows(
    q: Any, n: int | None, V: int
) -> tuple[str, list[np.ndarray] | None, list[list[Fraction]] | None, int, Scheme | None]:
    """Interpret ``q``: returns (kind, float rows, exact rows, n, generic scheme)."""
    if isinstance(q, IID):
        q._check_unbatched("acceptance_is_one")
        if n is not None and n != q.n:
            raise SpecTheoryInputError(f"argument 'n': {n} differs from the scheme's n = {q.n}")
        return "iid", [np.asarray(q.q)], None, q.n, None
    if isinstance(q, Independent):
        q._check_unbatched("acceptance_is_one")
        if n is not None and n != q.n:
            raise SpecTheoryInputError(f"argument 'n': {n} differs from the scheme's n = {q.n}")
        return "independent", [np.asarray(a) for a in q.qs], None, q.n, None
    if isinstance(q, Scheme):
        q._check_unbatched("acceptance_is_one")
        if n is not None and n != q.n:
            raise SpecTheoryInputError(f"argument 'n': {n} differs from the scheme's n = {q.n}")
        return "scheme", None, None, q.n, q
    nn = check_n(2 if n is None else n)
    arr = np.asarray(q, dtype=object) if not isinstance(q, np.ndarray) else q
    if arr.ndim == 2:
        rows = list(q)
        if len(rows) != nn:
            raise SpecTheoryInputError(
                f"argument 'q': {len(rows)} rows (one per draft model) but n = {nn}"
            )
        exact_rows = [_exact_vector(r, f"q[{j}]") for j, r in enumerate(rows)]
        frows = [as_distribution(r, f"q[{j}]", allow_batch=False) for j, r in enumerate(rows)]
        ex = exact_rows if all(e is not None for e in exact_rows) else None
        return "independent", frows, ex, nn, None  # type: ignore[return-value]
    qe = _exact_vector(q, "q")
    qv = as_distribution(q, "q", allow_batch=False)
    return "iid", [qv], None if qe is None else [qe], nn, None


def acceptance_is_one(
    p: Any, q: Any, n: int | None = 2, *, atol: float = ACCEPT_ONE_ATOL
) -> AcceptanceTest:
    r"""Decide whether :math:`\alpha^* = 1`, i.e. :math:`p(S) \ge Q(S^n)` for every :math:`S`.

    For two i.i.d. drafts this is Khisti et al.'s condition :math:`p(S) \ge q(S)^2`
    (arXiv 2410.18234); in general it follows from the subset form
    :math:`\alpha^* = 1 - \max_S [Q(S^n) - p(S)]` (Hu et al., arXiv 2502.18779). Checking single
    tokens is not enough: ``p = (.3, .3, .4)``, ``q = (.4, .4, .2)`` passes every singleton but
    :math:`S = \{0, 1\}` fails.

    Parameters
    ----------
    p
        Target distribution ``(V,)`` (floats, or rationals for an exact decision).
    q
        ``(V,)``: ``n`` i.i.d. drafts from ``q``; ``(n, V)`` (one row per model): independent drafts
        from different models, :math:`Q(S^n) = \prod_j q_j(S)`; or a scheme
        (:class:`~spectheory.schemes.IID`, :class:`~spectheory.schemes.Independent`, any other
        scheme through the subset form).
    n
        Number of drafts (default 2; must match a scheme's ``n``; ``None``: the scheme's).
    atol
        Float tolerance (see the module docstring); unused when ``p`` and ``q`` are rational.

    Returns
    -------
    AcceptanceTest
        ``bool()`` is the answer; when false it carries the violating subset (``witness``), and
        ``margin = p(S) - Q(S^n) < 0``.

    Notes
    -----
    i.i.d. drafts: the worst :math:`S` is a prefix of the ratio order :math:`p/q` ascending
    (:math:`s \mapsto s^n` is convex), so the test is one sort, :math:`O(V \log V)`, exact or float.
    Independent drafts: all :math:`2^V` sets for ``V <= MAX_SUBSETS_V`` (exact rationals are
    re-checked only on subsets whose float value is within ``SCREEN_MARGIN`` of 0), else the
    registered :math:`\alpha^*` solver. Other schemes: all subsets for small ``V``, else the solver.
    """
    if isinstance(q, Scheme) and n == 2 and q.n != 2:
        n = None  # the default n does not override a scheme
    pe = _exact_vector(p, "p")
    pv = as_distribution(p, "p", allow_batch=False)
    kind, rows, exact_rows, nn, scheme = _draft_rows(q, n, pv.shape[-1])
    V = pv.shape[-1]
    for j, r in enumerate(rows or []):
        if r.shape[-1] != V:
            raise SpecTheoryInputError(
                f"argument 'q'{'' if len(rows or []) == 1 else f'[{j}]'}: vocabulary size "
                f"{r.shape[-1]} does not match p's V = {V}"
            )
    if scheme is not None and scheme.V != V:
        raise SpecTheoryInputError(
            f"argument 'q': the scheme's V = {scheme.V} does not match p's V = {V}"
        )
    exact = pe is not None and exact_rows is not None
    if kind == "iid":
        if exact:
            return _iid_exact(pe, exact_rows[0], nn)  # type: ignore[index,arg-type]
        return _iid_float(pv, rows[0], nn, atol)  # type: ignore[index]
    if kind == "independent":
        if V <= MAX_SUBSETS_V:
            return _subsets(pv, rows, None, atol, pe if exact else None, exact_rows)  # type: ignore[arg-type]
        scheme = Independent(rows)  # type: ignore[arg-type]
    assert scheme is not None
    if V <= MAX_SUBSETS_V:
        return _subsets(pv, None, scheme, atol, None, None)
    return _via_solver(pv, scheme, atol)


def _iid_float(p: np.ndarray, q: np.ndarray, n: int, atol: float) -> AcceptanceTest:
    order = _ratio_order(p, q)
    P = np.concatenate([[0.0], np.cumsum(p[order])])
    S = np.minimum(np.concatenate([[0.0], np.cumsum(q[order])]), 1.0)
    vals = P - S**n
    k = int(np.argmin(vals))
    m = float(vals[k])
    if m >= -atol:
        return AcceptanceTest(True, None, max(m, 0.0) if m > -atol else m, atol=atol)
    mask = np.zeros(len(p), dtype=bool)
    mask[order[:k]] = True
    return AcceptanceTest(False, mask, m, float(P[k]), float(S[k] ** n), atol=atol)


def _iid_exact(p: list[Fraction], q: list[Fraction], n: int) -> AcceptanceTest:
    order = _ratio_order_exact(p, q)
    best, best_k, best_P, best_Q = Fraction(0), 0, Fraction(0), Fraction(0)
    pin, qin = Fraction(0), Fraction(0)
    for k, i in enumerate(order, start=1):
        pin += p[i]
        qin += q[i]
        v = pin - qin**n
        if v < best:
            best, best_k, best_P, best_Q = v, k, pin, qin**n
    if best >= 0:
        return AcceptanceTest(True, None, Fraction(0), exact=True)
    mask = np.zeros(len(p), dtype=bool)
    mask[order[:best_k]] = True
    return AcceptanceTest(False, mask, best, best_P, best_Q, exact=True)


def _all_masks(V: int) -> np.ndarray:
    idx = np.arange(2**V, dtype=np.int64)[:, None]
    return ((idx >> np.arange(V, dtype=np.int64)[None, :]) & 1).astype(bool)


def _subsets(
    p: np.ndarray,
    rows: list[np.ndarray] | None,
    scheme: Scheme | None,
    atol: float,
    pe: list[Fraction] | None,
    exact_rows: list[list[Fraction]] | None,
) -> AcceptanceTest:
    V = len(p)
    M = _all_masks(V)
    Mf = M.astype(np.float64)
    if rows is not None:
        Q = np.ones(len(M))
        for r in rows:
            Q = Q * (Mf @ r)
    else:
        assert scheme is not None
        Q = np.asarray(scheme.prob_all_in(M), dtype=np.float64)
    vals = Mf @ p - Q
    if pe is not None and exact_rows is not None:
        cand = np.flatnonzero(vals < SCREEN_MARGIN)
        best, best_i, best_P, best_Q = Fraction(0), -1, Fraction(0), Fraction(0)
        for i in cand.tolist():
            idx = np.flatnonzero(M[i]).tolist()
            pS = sum((pe[j] for j in idx), Fraction(0))
            QS = Fraction(1)
            for r in exact_rows:
                QS *= sum((r[j] for j in idx), Fraction(0))
            v = pS - QS
            if v < best:
                best, best_i, best_P, best_Q = v, i, pS, QS
        info = {"screened": len(cand)}
        if best_i < 0:
            return AcceptanceTest(True, None, Fraction(0), exact=True, method="subsets", info=info)
        return AcceptanceTest(
            False, M[best_i].copy(), best, best_P, best_Q, exact=True, method="subsets", info=info
        )
    i = int(np.argmin(vals))
    m = float(vals[i])
    if m >= -atol:
        return AcceptanceTest(True, None, m if m < 0 else 0.0, atol=atol, method="subsets")
    return AcceptanceTest(
        False, M[i].copy(), m, float(Mf[i] @ p), float(Q[i]), atol=atol, method="subsets"
    )


def _via_solver(p: np.ndarray, scheme: Scheme, atol: float) -> AcceptanceTest:
    from .api import optimal_acceptance as general

    res = general(p, scheme)
    H = np.asarray(res.witness, dtype=bool)
    pS = float(np.sum(p[H]))
    QS = float(scheme.prob_all_in(H))
    m = pS - QS
    info = {"solver": res.method, "alpha_star": float(res.value)}
    if m >= -atol:
        return AcceptanceTest(True, None, min(m, 0.0), atol=atol, method="solver", info=info)
    return AcceptanceTest(False, H.copy(), m, pS, QS, atol=atol, method="solver", info=info)


# ---------------------------------------------------------------------- the region alpha* = 1
@dataclass(frozen=True)
class AcceptanceOneRegion:
    r"""The set of targets :math:`p` with :math:`\alpha^*(p, q^{\otimes n}) = 1`.

    It is the polytope :math:`\{p \in \Delta : p(S) \ge q(S)^n\ \forall S\}`. Inside the cone of
    targets whose ratio order :math:`p/q` ascending is ``order`` (:math:`\pi`), only the
    :math:`V - 1` prefix inequalities

    .. math:: \sum_{i \le k} p_{\pi(i)} \ \ge\ \Bigl(\sum_{i \le k} q_{\pi(i)}\Bigr)^n,
        \qquad k = 1, \dots, V - 1,

    are needed (the worst set of such a :math:`p` is one of these prefixes).

    Attributes
    ----------
    q
        Draft distribution.
    n
        Number of i.i.d. drafts.
    order
        The ratio order :math:`\pi` the prefix inequalities refer to.
    thresholds
        ``thresholds[k-1]`` = :math:`(\sum_{i \le k} q_{\pi(i)})^n`, the lower bound on the
        ``k``-th prefix sum of ``p`` (``k = 1..V-1``).
    """

    q: np.ndarray
    n: int
    order: np.ndarray
    thresholds: np.ndarray

    def inequalities(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, b)`` with the prefix inequalities as ``A @ p >= b`` (``A`` is ``(V-1, V)``)."""
        V = len(self.q)
        A = np.zeros((V - 1, V))
        for k in range(1, V):
            A[k - 1, self.order[:k]] = 1.0
        return A, self.thresholds.copy()

    def all_inequalities(self) -> tuple[np.ndarray, np.ndarray]:
        r"""Every defining inequality :math:`p(S) \ge q(S)^n` for the :math:`2^V - 2` proper
        non-empty subsets (small ``V``): ``(A, b)`` with ``A @ p >= b``. Valid for every order."""
        V = len(self.q)
        if V > MAX_SUBSETS_V:
            raise SpecTheoryInputError(
                f"argument 'q': V = {V} > MAX_SUBSETS_V = {MAX_SUBSETS_V} for the full list"
            )
        M = _all_masks(V)[1:-1].astype(np.float64)
        return M, (M @ self.q) ** self.n

    def in_order_cone(self, p: Any) -> bool:
        r"""Whether :math:`p/q` is non-decreasing along ``order`` (then the prefixes suffice)."""
        pv = as_distribution(p, "p", allow_batch=False)
        po, qo = pv[self.order], self.q[self.order]
        # p_i / q_i <= p_j / q_j  <=>  p_i q_j <= p_j q_i (q = 0 handled as +inf)
        return bool(np.all(po[:-1] * qo[1:] <= po[1:] * qo[:-1] + 1e-15))

    def contains(self, p: Any, *, atol: float = ACCEPT_ONE_ATOL) -> bool:
        r"""Whether :math:`\alpha^*(p) = 1` (any ``p``; uses :func:`acceptance_is_one`)."""
        return bool(acceptance_is_one(p, self.q, self.n, atol=atol))

    def describe(self, *, digits: int = 6) -> list[str]:
        """The prefix inequalities as readable strings, e.g. ``p[2] + p[1] >= 0.64``."""
        out = []
        for k in range(1, len(self.q)):
            lhs = " + ".join(f"p[{int(i)}]" for i in self.order[:k])
            out.append(f"{lhs} >= {self.thresholds[k - 1]:.{digits}g}")
        return out

    def as_sympy(self, symbols: Sequence[Any] | None = None) -> list[Any]:
        """The prefix inequalities as sympy relations in symbols ``p0, p1, ...`` (or ``symbols``);
        each ``q`` entry becomes the rational of its shortest decimal repr (``0.4 -> 2/5``)."""
        import sympy as sp

        V = len(self.q)
        ps = list(symbols) if symbols is not None else list(sp.symbols(f"p0:{V}"))
        qs = [sp.Rational(repr(float(x))) for x in self.q]
        rels = []
        for k in range(1, V):
            idx = [int(i) for i in self.order[:k]]
            rels.append(sp.Ge(sum(ps[i] for i in idx), sum(qs[i] for i in idx) ** self.n))
        return rels


def acceptance_one_region(q: Any, n: int = 2, *, order: Any = None) -> AcceptanceOneRegion:
    r"""Characterise the targets :math:`p` with :math:`\alpha^* = 1` for ``n`` i.i.d. drafts from
    ``q`` (Khisti et al., arXiv 2410.18234, for ``n = 2``).

    Parameters
    ----------
    q
        Draft distribution ``(V,)``.
    n
        Number of drafts.
    order
        A permutation of the tokens: the ratio order :math:`p/q` ascending of the targets of
        interest. Default: ``q`` descending (the order of targets close to uniform :math:`p`).

    Returns
    -------
    AcceptanceOneRegion
        The prefix inequalities for ``order`` (``inequalities``, ``describe``, ``as_sympy``), the
        full list for small ``V`` (``all_inequalities``) and a membership test (``contains``).
    """
    qv = as_distribution(q, "q", allow_batch=False)
    nn = check_n(n)
    V = len(qv)
    if order is None:
        od = np.argsort(-qv, kind="stable")
    else:
        od = np.asarray(order)
        if od.shape != (V,) or sorted(od.tolist()) != list(range(V)):
            raise SpecTheoryInputError(
                f"argument 'order': must be a permutation of range({V}), got {order!r}"
            )
    S = np.cumsum(qv[od])[:-1]
    return AcceptanceOneRegion(qv, nn, od.astype(np.int64), np.minimum(S, 1.0) ** nn)

