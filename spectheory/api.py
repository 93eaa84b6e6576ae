r"""The main entry point: :func:`optimal_acceptance`."""

from __future__ import annotations

from typing import Any

from ._validate import as_distribution, broadcast_pair
from .result import Result
from .schemes import Scheme
from .solvers import registry

__all__ = ["available_methods", "optimal_acceptance"]


def optimal_acceptance(
    p: Any,
    scheme: Scheme,
    *,
    method: str = "auto",
    backend: str = "numpy",
    normalize: bool = False,
    **options: Any,
) -> Result:
    r"""Optimal acceptance :math:`\alpha^*(p, Q)` of a draft scheme, with its certificate.

    .. math::

        \alpha^* = \max_{\pi \in \Pi(Q, p)} \Pr_\pi(Y \in \bar x)
                 = \min_{H \subseteq \Omega} \bigl[1 + p(H) - Q(H^n)\bigr]

    (the transport LP of SpecTr, arXiv 2310.15141, and its subset dual, Hu et al., arXiv
    2502.18779). The best lossless verifier accepts one of the drafts with probability
    :math:`\alpha^*`.

    Parameters
    ----------
    p
        Target distribution ``(V,)`` or batch ``(B, V)``.
    scheme
        A draft scheme from :mod:`spectheory.schemes`. Batched schemes and batched ``p`` must have
        the same batch size; either may be a single row shared by the whole batch.
    method
        ``"auto"`` (the fastest exact method that applies), ``"prefix"``, ``"lp"`` (HiGHS),
        ``"cvxpy"``, ``"subsets"``, or a method registered by another module (see
        :func:`available_methods`).
    backend
        ``"numpy"`` (default) or ``"jax"`` when the JAX backend is installed.
    normalize
        Rescale each row of ``p`` to sum to 1 (never done unless asked).
    **options
        Passed to the solver.

    Returns
    -------
    Result
        ``value``, ``witness`` (:math:`H^*`), ``status``, ``method``, ``plan`` and ``duals`` (LP
        methods), ``info``.

    Raises
    ------
    ValueError
        Invalid ``p`` (naming the row and the problem), a vocabulary or batch mismatch with the
        scheme, or a method that does not apply to the scheme.

    Examples
    --------
    >>> import spectheory as st
    >>> r = st.optimal_acceptance([0.6, 0.3, 0.1], st.IID([0.2, 0.3, 0.5], 2))
    >>> round(r.value, 12), r.witness_tokens().tolist()
    (0.76, [1, 2])
    """
    if not isinstance(scheme, Scheme):
        raise ValueError(
            f"argument 'scheme': expected a spectheory scheme (IID, WithoutReplacement, ...), "
            f"got {type(scheme).__name__}"
        )
    if method == "exact":
        # Exact rational arithmetic (spectheory.solvers.exact) needs the raw Fraction entries of p,
        # not their float64 copy; the solver validates p itself.
        entry = registry.pick(scheme, method, backend)
        return entry.solve(p, scheme, normalize=normalize, **options)
    pv = as_distribution(p, "p", normalize=normalize)
    broadcast_pair(pv, scheme.batch_shape, scheme.V)
    entry = registry.pick(scheme, method, backend)
    return entry.solve(pv, scheme, **options)


def available_methods(scheme: Scheme, backend: str = "numpy") -> dict[str, str | None]:
    """Every registered method for ``backend`` and why it does not apply to ``scheme`` (None if it
    does)."""
    return {e.method: e.supports(scheme) for e in registry.entries(backend)}
