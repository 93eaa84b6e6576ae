r"""JAX backend: batched :math:`\alpha^*` over positions :math:`\times` full vocabularies.

``optimal_acceptance(p, scheme, backend="jax")`` runs here. Importing this package does
**not** import JAX (``import spectheory`` stays fast and works without an accelerator): the
registry only needs :func:`_supports_prefix` / :func:`_supports_lovasz`, and JAX is imported by
the solve functions and by attribute access to the functional core
(``spectheory.solvers.jax_backend.alpha_iid`` loads :mod:`.core` on first use).

Methods registered for ``backend="jax"``
----------------------------------------
``"prefix"``
    IID, Greedy, Hub, WithoutReplacement (any ``n``): the sorted-prefix theorem /
    greedy closed form, jit-compiled, chunked, optionally sharded over local devices.
``"lovasz"``
    Independent drafts: Frank--Wolfe on the min-norm-point problem over the base polytope of the
    submodular function :math:`H \mapsto p(H) - \prod_j q_j(H)` with a duality-gap certificate.

The math and the accuracy contract are in ``docs/jax.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

from ...result import Result
from ...schemes import IID, Greedy, Hub, Independent, Scheme, WithoutReplacement
from ..registry import SolverEntry, register

__all__ = [
    "PrefixOut",
    "alpha_greedy",
    "alpha_hub",
    "alpha_iid",
    "alpha_iid_with_order",
    "alpha_independent",
    "alpha_wor",
    "alpha_wor_chain_with_order",
    "alpha_wor_fast",
    "alpha_wor_with_order",
    "cumsum_compensated",
    "shard_batch",
    "solve_lovasz",
    "solve_prefix",
    "wor_rho",
]

_LAZY = {
    "PrefixOut": "core",
    "alpha_greedy": "core",
    "alpha_hub": "core",
    "alpha_iid": "core",
    "alpha_iid_with_order": "core",
    "alpha_wor": "core",
    "alpha_wor_with_order": "core",
    "alpha_wor_chain_with_order": "core",
    "alpha_wor_fast": "wor_moments",
    "cumsum_compensated": "core",
    "wor_rho": "core",
    "alpha_independent": "submodular",
    "shard_batch": "sharding",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


def solve_prefix(p: Any, scheme: Scheme, **options: Any) -> Result:
    """Batched sorted-prefix / greedy solve (see :func:`.solve.solve_prefix`)."""
    from .solve import solve_prefix as _solve

    return _solve(p, scheme, **options)


def solve_lovasz(p: Any, scheme: Scheme, **options: Any) -> Result:
    """Frank--Wolfe solve for Independent drafts (see :func:`.solve.solve_lovasz`)."""
    from .solve import solve_lovasz as _solve

    return _solve(p, scheme, **options)


def _supports_prefix(scheme: Scheme) -> str | None:
    if isinstance(scheme, (IID, Greedy, Hub)):
        return None
    if isinstance(scheme, WithoutReplacement):
        return None
    return f"no sorted-prefix theorem for {type(scheme).__name__} schemes"


def _supports_lovasz(scheme: Scheme) -> str | None:
    if isinstance(scheme, Independent):
        return None
    return "the Lovasz/Frank-Wolfe solver is for Independent drafts"


register(SolverEntry("prefix", "jax", _supports_prefix, solve_prefix, priority=10))
register(SolverEntry("lovasz", "jax", _supports_lovasz, solve_lovasz, priority=30))
