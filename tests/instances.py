"""Random target/draft pairs shared by several test modules."""

from __future__ import annotations

import numpy as np


def random_pair(
    rng: np.random.Generator, V: int, concentration: float
) -> tuple[np.ndarray, np.ndarray]:
    """Dirichlet ``p`` and ``q`` of size ``V``; with probability 0.3 each, one token of ``p`` and one
    of ``q`` (if ``q`` keeps some mass) is set to zero and the row renormalised."""
    p = rng.dirichlet(np.full(V, concentration))
    q = rng.dirichlet(np.full(V, concentration))
    if rng.random() < 0.3:
        p[rng.integers(V)] = 0.0
        p /= p.sum()
    if rng.random() < 0.3:
        k = int(rng.integers(V))
        if q.sum() - q[k] > 0:
            q[k] = 0.0
            q /= q.sum()
    return p, q
