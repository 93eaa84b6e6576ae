"""Registry of alpha* solvers: which methods exist, which schemes they handle, which ``"auto"`` picks.

A solver module registers itself at import with :func:`register`. Modules are imported lazily by
:func:`load_all` (heavy dependencies such as JAX or cvxpy are imported only inside solve functions).
Adding a solver is one module plus one entry in ``SOLVER_MODULES``; nothing else changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validate import SpecTheoryInputError
from ..result import Result
from ..schemes import Scheme

__all__ = ["SOLVER_MODULES", "SolverEntry", "entries", "load_all", "register"]

#: Modules that register solvers. Order does not matter; ``priority`` decides ``"auto"``.
SOLVER_MODULES: list[str] = [
    "spectheory.solvers.prefix",
    "spectheory.solvers.lp",
    "spectheory.solvers.subsets",
    "spectheory.solvers.jax_backend",
    "spectheory.solvers.exact",
    "spectheory.solvers.submodular",
]

SolveFn = Callable[..., Result]
SupportsFn = Callable[[Scheme], str | None]


@dataclass(frozen=True)
class SolverEntry:
    """One solver method.

    Attributes
    ----------
    method
        Public method name (``method=...`` of :func:`spectheory.optimal_acceptance`).
    backend
        ``"numpy"`` or ``"jax"``.
    supports
        ``supports(scheme)`` returns None when the method applies, else the reason it does not.
    solve
        ``solve(p, scheme, **options) -> Result`` with validated float64 ``p`` whose batch matches
        the scheme.
    priority
        Lower is tried first by ``method="auto"``; only ``exact`` methods are candidates for auto.
    exact
        Whether the method returns the exact optimum (up to floating point).
    """

    method: str
    backend: str
    supports: SupportsFn
    solve: SolveFn
    priority: int = 100
    exact: bool = True


_REGISTRY: dict[tuple[str, str], SolverEntry] = {}
_loaded = False


def register(entry: SolverEntry) -> SolverEntry:
    _REGISTRY[(entry.method, entry.backend)] = entry
    return entry


def load_all() -> None:
    global _loaded
    if _loaded:
        return
    for mod in SOLVER_MODULES:
        importlib.import_module(mod)
    _loaded = True


def entries(backend: str | None = None) -> list[SolverEntry]:
    load_all()
    out = [e for e in _REGISTRY.values() if backend is None or e.backend == backend]
    return sorted(out, key=lambda e: (e.priority, e.method))


def pick(scheme: Scheme, method: str, backend: str) -> SolverEntry:
    """Resolve ``method`` (or ``"auto"``) for ``scheme`` on ``backend``; raise a clear ValueError."""
    load_all()
    backends = sorted({b for (_, b) in _REGISTRY} | {"numpy", "jax"})
    if not isinstance(backend, str) or backend not in backends:
        raise SpecTheoryInputError(
            f"argument 'backend': unknown backend {backend!r} (valid: {', '.join(backends)})"
        )
    if method == "auto":
        reasons = []
        for e in entries(backend):
            if not e.exact:
                continue
            why = e.supports(scheme)
            if why is None:
                return e
            reasons.append(f"{e.method}: {why}")
        raise ValueError(
            f"no exact {backend} method applies to {scheme!r}: " + "; ".join(reasons)
        )
    e = _REGISTRY.get((method, backend))
    if e is None:
        known = sorted({m for (m, b) in _REGISTRY if b == backend})
        raise ValueError(
            f"argument 'method': unknown method {method!r} for backend {backend!r} "
            f"(known: {', '.join(known)})"
        )
    why = e.supports(scheme)
    if why is not None:
        raise ValueError(f"argument 'method': {method!r} does not apply to {scheme!r}: {why}")
    return e


def as_batch(p: np.ndarray, scheme: Scheme) -> tuple[np.ndarray, Any]:
    """Rows helper: ``(p2d (B, V), rows)`` where ``rows[b]`` is the scheme of row ``b``."""
    B = p.shape[0] if p.ndim == 2 else (scheme.batch_shape[0] if scheme.batch_shape else 1)
    p2 = np.broadcast_to(p, (B, p.shape[-1]))
    return p2, [scheme.row(b) for b in range(B)]
