"""Verification rules behind one interface (:class:`~spectheory.verifiers.base.Verifier`).

Each rule module registers its class; ``acceptance(name, p, q, n)`` reaches any of them by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Estimate, Verifier, get, names, register

# Rule modules (each registers its class on import). Add new modules here.
# (populated by the verifier modules)
# isort: split
from . import greedy, khisti, kseq, lossy, naive, rrs, rrs_wor, sd, spechub  # noqa: F401
from .optimal import Optimal  # noqa: F401  (optimal verifier, issue 8)

__all__ = ["Estimate", "Verifier", "acceptance", "get", "names", "register"]


def acceptance(name: str, p: Any, q: Any, n: int, **kwargs: Any) -> float | np.ndarray:
    """Exact acceptance of the verifier registered as ``name`` (e.g. ``"sd"``, ``"rrs"``)."""
    return get(name)(**kwargs).acceptance(p, q, n)
