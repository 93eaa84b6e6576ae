r"""Exact :math:`\alpha^*` for independent drafts from different models (``Independent``).

With :math:`\bar x_j \sim q_j` independently, :math:`Q(H^n) = \prod_j q_j(H)` and

.. math::

    \alpha^* = 1 + \min_{H \subseteq \Omega} F(H), \qquad F(H) = p(H) - \prod_{j=1}^n q_j(H),

(the subset dual of the transport LP; Hu et al., arXiv 2502.18779). :math:`F` is submodular
(a product of non-negative modular functions is supermodular; proof in ``docs/independent.md``)
and :math:`F(\emptyset) = 0`, so no single sort order is exact but the minimisation is a
submodular minimisation. We run the Fujishige--Wolfe minimum-norm-point algorithm on the base
polytope :math:`B(F)`; its linear oracle is one sort (Edmonds' greedy), and every iterate
:math:`x = \sum_l \lambda_l x^{(l)}` is a convex combination of greedy vertices, hence a point of
:math:`B(F)`. Edmonds' min--max theorem gives the certificate

.. math::

    x^-(\Omega) = \sum_i \min(x_i, 0) \;\le\; \min_H F(H) \;\le\; F(H^*),

so ``1 + x^-(\Omega)`` is a lower bound on :math:`\alpha^*` (it is the acceptance of the mixture
of priority selection rules :math:`\lambda`, followed by single-draft speculative sampling) and the
witness :math:`H^*` an upper bound. The iteration stops when the two meet within
``SUBMODULAR_GAP_TOL``. The best witness is read off the chains of the oracle orders (the level
sets of :math:`x`), at no extra cost.

For **two** drafts (``n = 2``) the default ``algorithm="auto"`` first runs the exact quadtree
branch and bound of :mod:`spectheory.solvers.independent2` over :math:`(q_1(H), q_2(H))`, whose
certificate (``info["box_certificate"]``) :func:`spectheory.certify` re-checks; Fujishige--Wolfe is
the path for ``n >= 3`` and the fallback when the quadtree does not close.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..result import Result, Status
from ..schemes import Independent, Scheme
from ..tolerances import CERT_GAP_TOL
from .registry import SolverEntry, register

__all__ = [
    "SUBMODULAR_ALGORITHMS",
    "SUBMODULAR_GAP_TOL",
    "SUBMODULAR_LP_FALLBACK",
    "SUBMODULAR_MAX_ITER",
    "SubmodularMin",
    "certificate_order",
    "fixed_point_candidate",
    "greedy_vertex",
    "product_submodular_min",
    "refine_certificate_order",
    "solve_submodular",
]

#: Stop when upper bound (witness) minus lower bound (base-polytope point) is below this.
SUBMODULAR_GAP_TOL: float = 1e-10
#: Iteration cap of the minimum-norm-point algorithm (major plus minor cycles).
SUBMODULAR_MAX_ITER: int = 1000
#: When the gap does not close, rows with at most this many draft tuples are settled by the LP.
SUBMODULAR_LP_FALLBACK: int = 250_000
#: Values of ``algorithm``: ``"auto"`` (quadtree for n = 2, else Wolfe), ``"boxes"`` (quadtree
#: for n = 2, Wolfe for other rows), ``"wolfe"`` (Fujishige--Wolfe only).
SUBMODULAR_ALGORITHMS: tuple[str, ...] = ("auto", "boxes", "wolfe")
#: Convex-combination weights below this are dropped from the active set.
_LAMBDA_FLOOR: float = 1e-14


def greedy_vertex(order: np.ndarray, p: np.ndarray, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Edmonds' greedy vertex of :math:`B(F)` for the order ``order``, and :math:`F` on its chain.

    For :math:`S_k` the first ``k`` tokens of ``order``, :math:`x_{\sigma(k)} = F(S_k) -
    F(S_{k-1})`; this vertex minimises :math:`\langle w, x\rangle` over :math:`B(F)` for every
    ``w`` sorted ascending by ``order``.

    Returns
    -------
    (x, chain)
        ``x`` in token order ``(V,)``; ``chain[k-1] = F(S_k)``.
    """
    P = np.cumsum(p[order])
    prod = np.ones(len(order))
    for q in qs:
        prod = prod * np.minimum(np.cumsum(q[order]), 1.0)
    chain = P - prod
    inc = np.diff(chain, prepend=0.0)
    x = np.empty_like(inc)
    x[order] = inc
    return x, chain


class SubmodularMin:
    """Result of :func:`product_submodular_min`: witness, value, certificate."""

    def __init__(
        self, witness: np.ndarray, value: float, lower: float, x: np.ndarray, iters: int,
        vertices: int,
    ) -> None:
        self.witness = witness
        self.value = value
        self.lower = lower
        self.x = x
        self.iters = iters
        self.vertices = vertices

    @property
    def gap(self) -> float:
        return self.value - self.lower


def _affine_min(G: np.ndarray) -> np.ndarray:
    """Coefficients (summing to 1) of the min-norm point of the affine hull, from the Gram matrix."""
    k = G.shape[0]
    A = np.zeros((k + 1, k + 1))
    A[:k, :k] = G
    A[:k, k] = 1.0
    A[k, :k] = 1.0
    b = np.zeros(k + 1)
    b[k] = 1.0
    sol = np.linalg.lstsq(A, b, rcond=None)[0]
    return sol[:k]


def product_submodular_min(
    p: np.ndarray,
    qs: np.ndarray,
    *,
    tol: float = SUBMODULAR_GAP_TOL,
    max_iter: int = SUBMODULAR_MAX_ITER,
    start: np.ndarray | None = None,
) -> SubmodularMin:
    r"""Minimise :math:`F(H) = p(H) - \prod_j q_j(H)` by the Fujishige--Wolfe algorithm.

    Parameters
    ----------
    p
        Target distribution ``(V,)``.
    qs
        Draft distributions ``(n, V)``.
    tol
        Stop when :math:`F(H^*) - x^-(\Omega) \le` ``tol``.
    max_iter
        Cap on major plus minor iterations.
    start
        Optional score vector whose ascending order gives the first vertex.

    Returns
    -------
    SubmodularMin
        ``witness`` (mask of :math:`H^*`), ``value`` :math:`F(H^*)`, ``lower``
        :math:`x^-(\Omega)`, the base-polytope point ``x``.
    """
    V = len(p)
    if start is None:
        H0 = fixed_point_candidate(p, qs)
        order = refine_certificate_order(p, qs, H0)[0]
    else:
        order = np.argsort(start, kind="stable")
    x, chain = greedy_vertex(order, p, qs)
    best_val = 0.0
    best_k = 0
    best_order = order

    def consider(order: np.ndarray, chain: np.ndarray) -> None:
        nonlocal best_val, best_k, best_order
        k = int(np.argmin(chain))
        if chain[k] < best_val:
            best_val, best_k, best_order = float(chain[k]), k + 1, order

    consider(order, chain)
    S = [x]
    lam = np.array([1.0])
    G = np.array([[float(x @ x)]])
    lower = float(np.minimum(x, 0.0).sum())
    it = 0
    vertices = 1
    while it < max_iter:
        it += 1
        lower = max(lower, float(np.minimum(x, 0.0).sum()))
        if best_val - lower <= tol:
            break
        order = np.argsort(x, kind="stable")
        v, chain = greedy_vertex(order, p, qs)
        vertices += 1
        consider(order, chain)
        if best_val - lower <= tol:
            break
        xx = float(x @ x)
        if xx - float(x @ v) <= 1e-15 * max(1.0, xx):
            break  # x is the min-norm point (up to rounding)
        row = np.array([float(s @ v) for s in S])
        S.append(v)
        G = np.block([[G, row[:, None]], [row[None, :], np.array([[float(v @ v)]])]])
        lam = np.append(lam, 0.0)
        while it < max_iter:
            it += 1
            alpha = _affine_min(G)
            if np.all(alpha > _LAMBDA_FLOOR):
                lam = alpha
                break
            neg = alpha <= _LAMBDA_FLOOR
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = np.where(neg, lam / (lam - alpha), np.inf)
            theta = float(np.clip(np.min(ratios), 0.0, 1.0))
            lam = theta * alpha + (1.0 - theta) * lam
            keep = lam > _LAMBDA_FLOOR
            if keep.all():
                keep[int(np.argmin(lam))] = False
            S = [s for s, k in zip(S, keep, strict=True) if k]
            G = G[np.ix_(keep, keep)]
            lam = lam[keep]
            lam = lam / lam.sum()
        x = np.sum([lk * s for lk, s in zip(lam, S, strict=True)], axis=0)
    lower = max(lower, float(np.minimum(x, 0.0).sum()))
    witness = np.zeros(V, dtype=bool)
    witness[best_order[:best_k]] = True
    return SubmodularMin(witness, best_val, lower, x, it, vertices)


def _gains(qs: np.ndarray, H: np.ndarray) -> np.ndarray:
    r"""First-order marginal gain of :math:`\prod_j q_j(H)` per token:
    :math:`\sum_j q_{j,i} \prod_{l \ne j} q_l(H)`."""
    masses = np.array([float(np.sum(q[H])) for q in qs])
    g = np.zeros(qs.shape[1])
    for j in range(len(qs)):
        g += qs[j] * float(np.prod(np.delete(masses, j)))
    return g


def fixed_point_candidate(p: np.ndarray, qs: np.ndarray, iters: int = 60) -> np.ndarray:
    r"""A good starting set: iterate :math:`H \leftarrow \{i : p_i < \text{gain}_i(H)\}` from the
    i.i.d. prefix of the mean draft (a local-optimality condition of every minimiser, see
    ``docs/independent.md``); keep the best :math:`F` seen. A heuristic: exactness comes from the
    certificate, not from this step."""
    qbar = np.mean(qs, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(qbar > 0, p / qbar, np.inf)
    order = np.argsort(r, kind="stable")
    _, chain = greedy_vertex(order, p, qs)
    k = int(np.argmin(chain))
    H = np.zeros(len(p), dtype=bool)
    if chain[k] < 0:
        H[order[: k + 1]] = True
    best, best_val = H.copy(), float(min(chain[k], 0.0))
    seen: set[bytes] = set()
    for _ in range(iters):
        key = np.packbits(H).tobytes()
        if key in seen:
            break
        seen.add(key)
        H = p < _gains(qs, H) if H.any() else p < np.prod(qs, axis=0)
        val = float(np.sum(p[H]) - np.prod([np.sum(q[H]) for q in qs]))
        if val < best_val:
            best, best_val = H.copy(), val
    return best


def certificate_order(p: np.ndarray, qs: np.ndarray, H: np.ndarray) -> np.ndarray:
    r"""An order whose greedy vertex tends to certify ``H``: ``H`` first, each part sorted by how
    much predecessor mass a token needs to keep the sign its part requires (``x <= 0`` inside,
    ``x >= 0`` outside); see ``docs/independent.md``."""
    g_in = _gains(qs, H)
    g_all = _gains(qs, np.ones(len(p), dtype=bool))
    with np.errstate(divide="ignore", invalid="ignore"):
        k_in = np.where(g_in > 0, p / g_in, np.inf)
        k_out = np.where(g_all > g_in, (p - g_in) / (g_all - g_in), np.inf)
    inn = np.flatnonzero(H)
    out = np.flatnonzero(~H)
    return np.concatenate(
        [inn[np.argsort(k_in[inn], kind="stable")], out[np.argsort(k_out[out], kind="stable")]]
    )


def _schedule(
    tokens: np.ndarray, qs: np.ndarray, p: np.ndarray, base: np.ndarray, inside: bool,
    order: np.ndarray,
) -> np.ndarray:
    r"""Re-order ``tokens`` (currently in ``order``) by release times (``inside``: token ``i``
    needs predecessor load :math:`\prod_j(A_j+q_{ji}) - \prod_j A_j \ge p_i`) or deadlines
    (outside: load :math:`\le p_i`) along the current path of predecessor masses :math:`A`."""
    seq = tokens[order]
    m = len(seq)
    if m == 0:
        return seq
    A = base[:, None] + np.concatenate(
        [np.zeros((len(qs), 1)), np.cumsum(qs[:, seq], axis=1)], axis=1
    )  # (n, m + 1): masses before position s
    lo = np.zeros(m, dtype=np.int64)
    hi = np.full(m, m, dtype=np.int64)

    def load(s: np.ndarray) -> np.ndarray:
        a = A[:, s]
        return np.prod(a + qs[:, seq], axis=0) - np.prod(a, axis=0)

    # inside: first s with load >= p (monotone increasing); outside: last s with load <= p.
    if inside:
        ok_hi = load(hi) >= p[seq]
        while np.any(lo < hi):
            mid = (lo + hi) // 2
            good = load(mid) >= p[seq]
            hi = np.where(good, mid, hi)
            lo = np.where(good, lo, mid + 1)
        key = np.where(ok_hi, lo, m + 1)
    else:
        ok_lo = load(lo) <= p[seq]
        while np.any(lo < hi):
            mid = (lo + hi + 1) // 2
            good = load(mid) <= p[seq]
            lo = np.where(good, mid, lo)
            hi = np.where(good, hi, mid - 1)
        key = np.where(ok_lo, lo, -1)
    return seq[np.argsort(key, kind="stable")]


def refine_certificate_order(
    p: np.ndarray, qs: np.ndarray, H: np.ndarray, rounds: int = 8
) -> tuple[np.ndarray, np.ndarray, float]:
    """Improve :func:`certificate_order` by alternating release-time / deadline re-sorting; return
    the best ``(order, vertex, lower bound)`` seen."""
    order = certificate_order(p, qs, H)
    k = int(H.sum())
    best = order
    x, _ = greedy_vertex(order, p, qs)
    best_x, best_lb = x, float(np.minimum(x, 0.0).sum())
    base_out = np.array([float(np.sum(q[H])) for q in qs])
    target = float(np.sum(p[H])) - float(np.prod(base_out))  # F(H): a vertex reaching it certifies
    for _ in range(rounds):
        if best_lb >= target - SUBMODULAR_GAP_TOL:
            break
        inn, out = order[:k], order[k:]
        new_in = _schedule(inn, qs, p, np.zeros(len(qs)), True, np.arange(len(inn)))
        new_out = _schedule(out, qs, p, base_out, False, np.arange(len(out)))
        order = np.concatenate([new_in, new_out])
        x, _ = greedy_vertex(order, p, qs)
        lb = float(np.minimum(x, 0.0).sum())
        if lb > best_lb:
            best, best_x, best_lb = order, x, lb
    return best, best_x, best_lb


def _value_of(p: np.ndarray, qs: np.ndarray, H: np.ndarray) -> float:
    import math

    prod = 1.0
    for q in qs:
        prod *= math.fsum(q[H].tolist())
    return 1.0 + math.fsum(p[H].tolist()) - prod


def solve_submodular(
    p: np.ndarray,
    scheme: Scheme,
    *,
    tol: float = SUBMODULAR_GAP_TOL,
    max_iter: int = SUBMODULAR_MAX_ITER,
    algorithm: str = "auto",
    **_: Any,
) -> Result:
    """Solver entry: ``Independent`` drafts, row by row (``method="submodular"``).

    ``algorithm`` (one of ``SUBMODULAR_ALGORITHMS``): ``"auto"``/``"boxes"`` certify two-draft
    rows with the quadtree branch and bound (:func:`~spectheory.solvers.independent2.two_draft_box_min`,
    falling back to Fujishige--Wolfe if it does not close); ``"wolfe"`` always runs
    Fujishige--Wolfe. ``info["certificate_kind"]`` says, per row, which certificate was produced.
    """
    if algorithm not in SUBMODULAR_ALGORITHMS:
        raise ValueError(
            f"argument 'algorithm': {algorithm!r} is not one of {', '.join(SUBMODULAR_ALGORITHMS)}"
        )
    from .independent2 import BoxCertificate, two_draft_box_min

    t0 = time.perf_counter()
    single = p.ndim == 1 and not scheme.is_batched
    B = p.shape[0] if p.ndim == 2 else (scheme.batch_shape[0] if scheme.is_batched else 1)
    p2 = np.broadcast_to(p, (B, p.shape[-1]))
    values = np.empty(B)
    witness = np.zeros((B, p.shape[-1]), dtype=bool)
    lowers = np.empty(B)
    iters: list[int] = []
    statuses: list[bool] = []
    points: list[np.ndarray | None] = []
    kinds: list[str] = []
    box_certs: list[BoxCertificate | None] = []
    fallbacks = 0
    for b in range(B):
        row = scheme.row(b)
        assert isinstance(row, Independent)
        qs = np.stack(row.qs)
        if len(qs) == 2 and algorithm != "wolfe":
            pb = np.ascontiguousarray(p2[b])
            box = two_draft_box_min(pb, qs[0], qs[1], tol=tol)
            if box.closed and box.gap <= max(tol, CERT_GAP_TOL):
                witness[b] = box.witness
                values[b] = _value_of(p2[b], qs, box.witness)
                lowers[b] = 1.0 + box.lower
                iters.append(box.rounds)
                points.append(None)
                kinds.append("boxes")
                box_certs.append(box.certificate)
                statuses.append(True)
                continue
        kinds.append("base_polytope")
        box_certs.append(None)
        res = product_submodular_min(np.ascontiguousarray(p2[b]), qs, tol=tol, max_iter=max_iter)
        witness[b] = res.witness
        values[b] = _value_of(p2[b], qs, res.witness)
        lowers[b] = 1.0 + res.lower
        iters.append(res.iters)
        points.append(res.x)
        ok = values[b] - lowers[b] <= max(tol, CERT_GAP_TOL)
        n_tuples = float(np.prod([np.count_nonzero(q > 0) for q in qs]))
        if not ok and n_tuples <= SUBMODULAR_LP_FALLBACK:
            # Gap not closed within max_iter: the explicit LP is small enough to settle it; its
            # primal plan value is the lower bound.
            from .lp import solve_lp

            lp = solve_lp(np.ascontiguousarray(p2[b]), row, backend="lp")
            if lp.status is Status.OPTIMAL and float(lp.value) <= values[b]:
                witness[b] = lp.witness
                values[b] = float(lp.value)
                lowers[b] = float(lp.info["primal_value"])
                ok = True
                fallbacks += 1
        statuses.append(ok)
    gaps = values - lowers
    info: dict[str, Any] = {
        "time_s": time.perf_counter() - t0,
        "lower_bound": float(lowers[0]) if single else lowers,
        "gap": float(gaps[0]) if single else gaps,
        "error_bound": float(np.max(np.maximum(gaps, 0.0))),
        "iterations": iters[0] if single else iters,
        "base_point": points[0] if single else points,
        "lp_fallbacks": fallbacks,
        "certificate_kind": kinds[0] if single else kinds,
        "certificate": (
            "boxes: lower_bound = 1 + min over the leaves of a quadtree tiling of the "
            "(q1(H), q2(H)) plane of a McCormick bound (info['box_certificate'], re-checked by "
            "spectheory.certify); base_polytope: lower_bound = 1 + sum_i min(x_i, 0) for a point "
            "x of the base polytope B(F) (a convex combination of greedy vertices; Edmonds' "
            "min-max theorem)"
        ),
    }
    if any(c is not None for c in box_certs):
        info["box_certificate"] = box_certs[0] if single else box_certs
    return Result.from_rows(
        values,
        witness,
        single=single,
        status=Status.OPTIMAL if all(statuses) else Status.INACCURATE,
        method="submodular",
        scheme=scheme.name,
        info=info,
    )


def _supports(scheme: Scheme) -> str | None:
    if not isinstance(scheme, Independent):
        return "the submodular method is for Independent drafts (different draft models)"
    return None


# Priority 40: below (before) the explicit LP (50), so "auto" picks it for Independent drafts.
register(SolverEntry("submodular", "numpy", _supports, solve_submodular, priority=40))
