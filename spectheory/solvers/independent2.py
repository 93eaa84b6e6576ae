r"""Exact, certified :math:`\alpha^*` for two independent drafts by a 2-D branch and bound.

For ``Independent([q1, q2])`` (one draft from each of two models; Hu et al., arXiv 2502.18779,
subset dual; Khisti et al., arXiv 2410.18234, for the two-draft setting)

.. math::

    \alpha^* = 1 + \min_{H \subseteq \Omega} F(H), \qquad F(H) = p(H) - x_H\, y_H, \qquad
    x_H = q_1(H),\ y_H = q_2(H).

We branch over the plane of :math:`(x_H, y_H) \in [0, 1]^2` with a dyadic quadtree. For a cell
:math:`C` every *minimiser* :math:`H^*` with :math:`(x, y) = (x_{H^*}, y_{H^*}) \in C` satisfies the
local-optimality conditions (``docs/independent.md`` §5)

.. math::

    p_i - q_{1i} q_{2i} < y\,q_{1i} + x\,q_{2i} \Rightarrow i \in H^*, \qquad
    p_i + q_{1i} q_{2i} > y\,q_{1i} + x\,q_{2i} \Rightarrow i \notin H^*,

so with the box :math:`[x_l, x_h] \times [y_l, y_h] \supseteq` the cell, the tokens of
:math:`L = \{p_i - q_{1i}q_{2i} < y_l q_{1i} + x_l q_{2i}\}` are in :math:`H^*`, those outside
:math:`U = \{p_i + q_{1i}q_{2i} \le y_h q_{1i} + x_h q_{2i}\}` are not, and the box shrinks to
:math:`[\max(x_l, q_1(L)), \min(x_h, q_1(U))] \times \dots` (repeated ``BOX_ROUNDS`` times; a cell
whose box empties or where :math:`L \not\subseteq U` holds no minimiser). McCormick's envelopes
(McCormick, Math. Programming 10, 1976)
:math:`xy \le x_h y + y_l x - x_h y_l` and :math:`xy \le x_l y + y_h x - x_l y_h` then give the
modular lower bound

.. math::

    F(H^*) \ge x_h y_l + \sum_{i \in L} c_i + \sum_{i \in U \setminus L} \min(0, c_i),
    \qquad c_i = p_i - y_l q_{1i} - x_h q_{2i}

(and its mirror), computed for many cells at once as one ``(cells, tokens)`` pass. Each bound also
yields a candidate set :math:`L \cup \{i \in U\setminus L: c_i < 0\}` whose exact :math:`F` is an
upper bound. Cells whose bound is within ``tol`` of the incumbent become leaves; the leaves tile
:math:`[0,1]^2`, and their list is the certificate (:class:`BoxCertificate`), re-checked
independently by :func:`spectheory.certify.check_box_certificate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BOX_CHUNK_ELEMS",
    "BOX_MARGIN",
    "BOX_MAX_CELLS",
    "BOX_MAX_DEPTH",
    "BOX_PAD",
    "BOX_ROUNDS",
    "BOX_TOP",
    "BoxCertificate",
    "BoxMin",
    "two_draft_box_min",
]

#: Each cell is widened by this much on every side before it is used: it absorbs the float64
#: rounding of the token tests :math:`p_i \mp q_{1i}q_{2i} \lessgtr y q_{1i} + x q_{2i}`
#: (whose error is below :math:`4\varepsilon(q_{1i} + q_{2i} + p_i)`), so no token is misclassified.
BOX_PAD: float = 1e-12
#: Slack added to the mass sums :math:`q_1(L), q_1(U), \dots` when a box is shrunk (pairwise float64
#: summation of at most a million probabilities is accurate to far better than this).
BOX_MARGIN: float = 1e-13
#: Upper edge of the cells on the top/right border of the quadtree: :math:`q_j(H) \le q_j(\Omega)
#: \le 1 + 10^{-4}` for validated inputs, so the tiling of :math:`[0,1]^2` with border cells
#: stretched to ``BOX_TOP`` covers every reachable :math:`(x, y)` (finite, so no ``inf * 0``).
BOX_TOP: float = 2.0
#: Number of box-shrinking rounds per cell.
BOX_ROUNDS: int = 3
#: Deepest quadtree level (cells of side :math:`2^{-40}`); deeper means "not closed".
BOX_MAX_DEPTH: int = 40
#: Largest number of open cells in one round; more means "not closed" (the caller falls back).
BOX_MAX_CELLS: int = 1 << 14
#: Cells are processed in chunks of at most this many (cell, token) pairs (memory bound).
BOX_CHUNK_ELEMS: int = 1 << 22


@dataclass(frozen=True, eq=False)
class BoxCertificate:
    r"""A quadtree certificate of :math:`\min_H F(H) \ge` ``min(lower)``.

    Attributes
    ----------
    leaves
        ``(K, 3)`` int64 rows ``(level, i, j)``: the dyadic cell
        :math:`[i 2^{-l}, (i+1) 2^{-l}] \times [j 2^{-l}, (j+1) 2^{-l}]` of the :math:`(x, y)` =
        :math:`(q_1(H), q_2(H))` plane (a cell touching the upper edge extends to ``BOX_TOP``).
        The leaves tile :math:`[0, 1]^2`.
    lower
        ``(K,)`` the solver's lower bound on :math:`F` over each leaf (``inf``: no minimiser there).
        Informational: :func:`spectheory.certify.check_box_certificate` recomputes every bound.
    rounds, pad, margin
        The box-shrinking parameters the bounds were computed with (``BOX_ROUNDS``, ``BOX_PAD``,
        ``BOX_MARGIN``).
    """

    leaves: np.ndarray
    lower: np.ndarray
    rounds: int = BOX_ROUNDS
    pad: float = BOX_PAD
    margin: float = BOX_MARGIN


@dataclass(frozen=True, eq=False)
class BoxMin:
    """Result of :func:`two_draft_box_min` (values are of :math:`F`, i.e. :math:`\\alpha - 1`)."""

    witness: np.ndarray
    value: float
    lower: float
    closed: bool
    certificate: BoxCertificate | None
    rounds: int
    cells: int

    @property
    def gap(self) -> float:
        return self.value - self.lower


def _exact_F(p: np.ndarray, q1: np.ndarray, q2: np.ndarray, H: np.ndarray) -> float:
    """:math:`F(H)` with compensated sums (``math.fsum``) of the non-negative masses."""
    return math.fsum(p[H].tolist()) - math.fsum(q1[H].tolist()) * math.fsum(q2[H].tolist())


def _polish(
    p: np.ndarray, q1: np.ndarray, q2: np.ndarray, H: np.ndarray, val: float, iters: int = 20
) -> tuple[np.ndarray, float]:
    r"""Fixed-point improvement :math:`H \leftarrow \{i : p_i < y_H q_{1i} + x_H q_{2i}\}` (every
    minimiser is such a half-plane set, ``docs/independent.md`` §5); keep the best exact value."""
    for _ in range(iters):
        x, y = float(np.sum(q1[H])), float(np.sum(q2[H]))
        H2 = p < y * q1 + x * q2
        if np.array_equal(H2, H):
            break
        v2 = _exact_F(p, q1, q2, H2)
        if v2 >= val:
            break
        H, val = H2, v2
    return H, val


def _cell_edges(level: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower/upper edges of dyadic cells ``idx`` at ``level``; the last cell extends to
    ``BOX_TOP`` (masses of validated distributions may exceed 1 by rounding)."""
    h = 0.5**level
    lo = idx * h
    hi = np.where(idx == (1 << level) - 1, BOX_TOP, (idx + 1) * h)
    return lo, hi


def two_draft_box_min(
    p: np.ndarray,
    q1: np.ndarray,
    q2: np.ndarray,
    *,
    tol: float = 1e-10,
    max_depth: int = BOX_MAX_DEPTH,
    max_cells: int = BOX_MAX_CELLS,
    start: np.ndarray | None = None,
) -> BoxMin:
    r"""Minimise :math:`F(H) = p(H) - q_1(H)\,q_2(H)` exactly, with a quadtree certificate.

    Parameters
    ----------
    p, q1, q2
        Target and the two draft distributions, ``(V,)`` float64 each (validated by the caller).
    tol
        A cell is closed when its lower bound is at least the incumbent minus ``tol``; on success
        ``value - lower <= tol``.
    max_depth, max_cells
        Give up (``closed=False``, ``lower=-inf``) beyond this depth or this many open cells.
    start
        Optional mask of a good starting set (incumbent).

    Returns
    -------
    BoxMin
        ``witness`` (mask of the best set), ``value`` :math:`F(H^*)` (``math.fsum``), ``lower``
        (minimum leaf bound), ``closed``, ``certificate`` (when closed), ``rounds`` (quadtree levels
        visited), ``cells`` (cells evaluated).
    """
    V = p.shape[-1]
    keep = np.flatnonzero((q1 > 0) | (q2 > 0))  # tokens with q1 = q2 = 0 are never useful
    P, X, Y = p[keep], q1[keep], q2[keep]
    W = X * Y
    LO, HI = P - W, P + W
    vals = np.stack([P, X, Y], axis=1)

    best_val = 0.0  # F(empty set)
    best_H = np.zeros(V, dtype=bool)
    if start is not None and start.any():
        v0 = _exact_F(p, q1, q2, start)
        if v0 < best_val:
            best_val, best_H = v0, start.copy()

    level = 0
    ci = np.zeros(1, dtype=np.int64)
    cj = np.zeros(1, dtype=np.int64)
    parent_box = np.array([[-BOX_PAD, BOX_TOP + BOX_PAD, -BOX_PAD, BOX_TOP + BOX_PAD]])
    base = np.zeros((1, 3))  # sums of (p, q1, q2) over inactive tokens fixed inside each cell
    act = np.arange(len(P))
    leaves: list[np.ndarray] = []
    leaf_lb: list[np.ndarray] = []
    cells = 0
    closed = False
    pad = BOX_PAD
    while True:
        cells += len(ci)
        xlo, xhi = _cell_edges(level, ci)
        ylo, yhi = _cell_edges(level, cj)
        K = len(ci)
        xl = np.maximum(xlo - pad, parent_box[:, 0])
        xh = np.minimum(xhi + pad, parent_box[:, 1])
        yl = np.maximum(ylo - pad, parent_box[:, 2])
        yh = np.minimum(yhi + pad, parent_box[:, 3])
        A = vals[act]
        Xa, Ya, LOa, HIa, Pa = X[act], Y[act], LO[act], HI[act], P[act]
        m = max(len(act), 1)
        chunk = max(1, BOX_CHUNK_ELEMS // m)
        lb = np.empty(K)
        dead = np.zeros(K, dtype=bool)
        free_any = np.zeros(len(act), dtype=bool)
        cand_val = np.full(K, np.inf)
        cand_env = np.zeros(K, dtype=np.int64)
        for s in range(0, K, chunk):
            sl = slice(s, min(K, s + chunk))
            bxl, bxh, byl, byh = xl[sl], xh[sl], yl[sl], yh[sl]
            bbase = base[sl]
            bdead = (bxl > bxh) | (byl > byh)
            for r in range(BOX_ROUNDS + 1):
                L = LOa[None, :] < byl[:, None] * Xa[None, :] + bxl[:, None] * Ya[None, :]
                U = HIa[None, :] <= byh[:, None] * Xa[None, :] + bxh[:, None] * Ya[None, :]
                bdead |= (L & ~U).any(axis=1)
                if r == BOX_ROUNDS:
                    break
                sL = bbase + L.astype(np.float64) @ A
                sU = bbase + U.astype(np.float64) @ A
                bxl = np.maximum(bxl, sL[:, 1] - BOX_MARGIN)
                bxh = np.minimum(bxh, sU[:, 1] + BOX_MARGIN)
                byl = np.maximum(byl, sL[:, 2] - BOX_MARGIN)
                byh = np.minimum(byh, sU[:, 2] + BOX_MARGIN)
                bdead |= (bxl > bxh) | (byl > byh)
            xl[sl], xh[sl], yl[sl], yh[sl] = bxl, bxh, byl, byh
            best_lb = np.full(len(bxl), -np.inf)
            for e, (a, b) in enumerate(((byl, bxh), (byh, bxl))):
                # McCormick: xy <= b*y + a*x - a*b with (a, b) = (y_l, x_h) or (y_h, x_l).
                c = Pa[None, :] - a[:, None] * Xa[None, :] - b[:, None] * Ya[None, :]
                inH = L | (U & (c < 0))
                bound = (
                    a * b + bbase[:, 0] - a * bbase[:, 1] - b * bbase[:, 2]
                    + np.where(inH, c, 0.0).sum(axis=1)
                )
                best_lb = np.maximum(best_lb, bound)
                sh = bbase + inH.astype(np.float64) @ A
                fv = sh[:, 0] - sh[:, 1] * sh[:, 2]
                better = fv < cand_val[sl]
                cand_val[sl] = np.where(better, fv, cand_val[sl])
                cand_env[sl] = np.where(better, e, cand_env[sl])
            best_lb[bdead] = np.inf
            lb[sl] = best_lb
            dead[sl] = bdead
            live_rows = ~bdead
            if live_rows.any():
                free_any |= (U[live_rows] & ~L[live_rows]).any(axis=0)
        cand_val[dead] = np.inf
        k = int(np.argmin(cand_val))
        if cand_val[k] < best_val:
            # Rebuild the candidate on all tokens (inactive tokens are fixed consistently with the
            # cell) and keep it only by its exact value: the incumbent is always a realised set.
            a, b = (yl[k], xh[k]) if cand_env[k] == 0 else (yh[k], xl[k])
            w = q1 * q2
            Lf = p - w < yl[k] * q1 + xl[k] * q2
            Uf = p + w <= yh[k] * q1 + xh[k] * q2
            Hf = (Lf | (Uf & (p - a * q1 - b * q2 < 0))) & ((q1 > 0) | (q2 > 0))
            vf = _exact_F(p, q1, q2, Hf)
            if vf < best_val:
                best_val, best_H = vf, Hf
        done = lb >= best_val - tol
        leaves.append(np.stack([np.full(int(done.sum()), level), ci[done], cj[done]], axis=1))
        leaf_lb.append(lb[done])
        live = ~done
        n_live = int(live.sum())
        if n_live == 0:
            closed = True
            break
        if level >= max_depth or 4 * n_live > max_cells:
            break
        # next round: shrink the active token set to the union of the open cells' free tokens;
        # tokens leaving it are fixed (in or out) in every open cell: fold the fixed-in ones into base.
        leaving = ~free_any
        bxl, bxh, byl, byh = xl[live], xh[live], yl[live], yh[live]
        base = base[live]
        if leaving.any():
            Lleave = (
                LOa[None, leaving] < byl[:, None] * Xa[None, leaving] + bxl[:, None] * Ya[None, leaving]
            )
            base = base + Lleave.astype(np.float64) @ A[leaving]
        act = act[free_any]
        box = np.stack([bxl, bxh, byl, byh], axis=1)
        ci2, cj2 = ci[live], cj[live]
        ci = np.repeat(2 * ci2, 4) + np.tile(np.array([0, 1, 0, 1]), n_live)
        cj = np.repeat(2 * cj2, 4) + np.tile(np.array([0, 0, 1, 1]), n_live)
        parent_box = np.repeat(box, 4, axis=0)
        base = np.repeat(base, 4, axis=0)
        level += 1
    best_H, best_val = _polish(p, q1, q2, best_H, _exact_F(p, q1, q2, best_H))
    leaf_arr = np.concatenate(leaves, axis=0).astype(np.int64)
    lb_arr = np.concatenate(leaf_lb)
    lower = float(lb_arr.min()) if closed and len(lb_arr) else -np.inf
    if not np.isfinite(lower):
        # Every leaf empty is impossible in exact arithmetic (a minimiser exists): do not trust it.
        closed, lower = False, -np.inf
    cert = BoxCertificate(leaf_arr, lb_arr) if closed else None
    return BoxMin(best_H, best_val, lower, closed, cert, level + 1, cells)
