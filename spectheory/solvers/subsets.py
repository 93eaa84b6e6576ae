r"""Brute force over all :math:`2^V` token sets: the simplest possible oracle (``V <= 20``).

.. math:: \alpha^* = \min_{H \subseteq \Omega} \bigl[1 + p(H) - Q(H^n)\bigr]

(Hu et al., arXiv 2502.18779; the dual of the transport LP, ``docs/theory.md``). Works for every
scheme, using only :meth:`~spectheory.schemes.Scheme.prob_all_in`.
"""

from __future__ import annotations

import time

import numpy as np

from ..result import Result, Status
from ..schemes import Scheme
from ..tolerances import MAX_SUBSETS_V
from .registry import SolverEntry, register

__all__ = ["all_masks", "solve_subsets"]


def all_masks(V: int) -> np.ndarray:
    """All ``2**V`` subsets as a boolean array ``(2**V, V)`` (bit j of the row index = token j)."""
    idx = np.arange(2**V, dtype=np.int64)[:, None]
    return ((idx >> np.arange(V, dtype=np.int64)[None, :]) & 1).astype(bool)


def solve_subsets(p: np.ndarray, scheme: Scheme) -> Result:
    t0 = time.perf_counter()
    single = p.ndim == 1 and not scheme.is_batched
    B = p.shape[0] if p.ndim == 2 else (scheme.batch_shape[0] if scheme.is_batched else 1)
    p2 = np.broadcast_to(p, (B, p.shape[-1]))
    M = all_masks(scheme.V)
    Mf = M.astype(np.float64)
    values = np.empty(B)
    witness = np.zeros((B, scheme.V), dtype=bool)
    for b in range(B):
        vals = 1.0 + Mf @ p2[b] - scheme.row(b).prob_all_in(M)
        k = int(np.argmin(vals))
        values[b] = vals[k]
        witness[b] = M[k]
    return Result.from_rows(
        values,
        witness,
        single=single,
        status=Status.OPTIMAL,
        method="subsets",
        scheme=scheme.name,
        info={"time_s": time.perf_counter() - t0, "error_bound": 0.0, "num_subsets": 2**scheme.V},
    )


def _supports(scheme: Scheme) -> str | None:
    if scheme.V > MAX_SUBSETS_V:
        return f"2^V subsets with V = {scheme.V} > MAX_SUBSETS_V = {MAX_SUBSETS_V}"
    return None


register(SolverEntry("subsets", "numpy", _supports, solve_subsets, priority=90))
