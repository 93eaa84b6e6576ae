r"""The sorted-prefix algorithm: :math:`\alpha^*` in :math:`O(V \log V)`.

Sort tokens by :math:`r(y) = p(y)/q(y)` ascending (:math:`q(y)=0` gives :math:`r=+\infty`, last) and let
:math:`H_k` be the first :math:`k` tokens. For i.i.d. drafts some minimiser of the subset form is a
prefix (Hu et al., arXiv 2502.18779; proof in ``docs/theory.md``), so

.. math::

    \alpha^* = \min_{0 \le k \le V} \bigl[1 + P_k - Q(H_k^n)\bigr],

with prefix sums :math:`P_k = p(H_k)`. Greedy drafts and SpecHub have the closed form
:math:`p(D) + \sum_{y \notin D} \min(p(y), q(y)/q(\Omega\setminus D))`. Sampling without replacement
uses the same chain with :math:`Q(H_k^n)` from the series of ``docs/theory.md`` (``n <= 3`` here).
"""

from __future__ import annotations

import time

import numpy as np

from ..result import Result, Status
from ..schemes import IID, Greedy, Hub, Scheme, WithoutReplacement
from .registry import SolverEntry, register

__all__ = ["prefix_iid", "prefix_order", "solve_prefix"]

#: Largest V for the O(V^2) n = 3 without-replacement chain.
WOR3_MAX_V = 4096
#: Without replacement: rows whose draft has at most this many positive entries (top-k / top-p
#: truncated or underflowed low-temperature drafts) run the reference chain on those entries only.
WOR_SMALL_SUPPORT = 2048


def prefix_order(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Ascending order of ``p/q`` along the last axis (``q = 0`` last; stable on ties)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(q > 0, p / np.where(q > 0, q, 1.0), np.inf)
    return np.argsort(r, axis=-1, kind="stable")


def _finish(vals: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Given chain values ``(B, V)`` for k = 1..V, add k = 0 (value 1), return (value, mask)."""
    B, V = vals.shape
    full = np.concatenate([np.ones((B, 1)), vals], axis=1)
    k = np.argmin(full, axis=1)
    value = full[np.arange(B), k]
    mask = np.zeros((B, V), dtype=bool)
    ranks = np.arange(V)[None, :] < k[:, None]  # ranks inside the prefix
    np.put_along_axis(mask, order, ranks, axis=1)
    return value, mask


def prefix_iid(p: np.ndarray, q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """alpha* and witness for i.i.d. drafts, rows of ``p``, ``q`` (``(B, V)`` float64).

    Exact bucketed path of :mod:`.fastprefix` (sorts only the candidate buckets); vocabularies below
    ``fastprefix.FAST_MIN_V`` use the plain full sort ``fastprefix.prefix_iid_reference``.
    """
    from .fastprefix import prefix_iid_fast

    return prefix_iid_fast(p, q, n)


def _prefix_wor(
    p: np.ndarray, q: np.ndarray, n: int, info: dict[str, object] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""alpha* and witness for sampling without replacement, any ``n`` (rows of ``(B, V)`` arrays).

    Each row first tries the bucketed fast path :func:`spectheory.solvers.wor_fast.wor_prefix_fast`
    (per-bucket sums and moments, exact evaluation only in the candidate buckets); rows it declines
    (small ``V``, peaked ``q`` that needs deflation) use the reference chain
    :func:`spectheory.solvers.wor.wor_chain` on the full sort. The prefix property for this scheme
    is proved in ``docs/without_replacement.md`` (section 6). When ``info`` is given, its
    ``"error_bound"`` receives the largest bound on the error of an evaluated
    :math:`Q(H_k^n)` (a bound on the error of the returned value), ``"quad_nodes"`` the node count
    and ``"fast_rows"`` the number of rows the fast path answered.
    """
    from .wor import wor_chain
    from .wor_fast import wor_prefix_fast

    B, V = p.shape
    value = np.empty(B)
    mask = np.zeros((B, V), dtype=bool)
    bound = 0.0
    nodes = 0
    fast_rows = 0
    support_rows = 0
    for b in range(B):
        sm = _wor_small_support(p[b], q[b], n)
        if sm is not None:
            value[b], mask[b], err, used = sm
            bound = max(bound, err)
            nodes += used
            support_rows += 1
            continue
        fr = wor_prefix_fast(p[b], q[b], n)
        if fr is not None:
            value[b] = fr.value
            mask[b] = fr.mask
            bound = max(bound, fr.error)
            nodes += int(fr.info.get("quad_nodes", 0))
            fast_rows += 1
            continue
        order = prefix_order(p[b : b + 1], q[b : b + 1])
        ps = np.take_along_axis(p[b : b + 1], order, axis=1)
        qs = np.take_along_axis(q[b : b + 1], order, axis=1)
        ch = wor_chain(qs[0], n)
        bound = max(bound, float(np.max(ch.error, initial=0.0)))
        nodes += ch.nodes
        v, m = _finish(1.0 + np.cumsum(ps, axis=1) - ch.Q[None, :], order)
        value[b] = v[0]
        mask[b] = m[0]
    if info is not None:
        info["error_bound"] = bound
        info["quad_nodes"] = nodes
        info["fast_rows"] = fast_rows
        info["support_rows"] = support_rows
    return value, mask


def _wor_small_support(
    p: np.ndarray, q: np.ndarray, n: int
) -> tuple[float, np.ndarray, float, int] | None:
    r"""The reference chain on the positive entries of ``q`` only, when there are at most
    ``WOR_SMALL_SUPPORT`` of them and fewer than ``V`` (else ``None``).

    Tokens with :math:`q = 0` come last in the stable ratio order (ratio :math:`+\infty`) and
    leave :math:`Q` unchanged while :math:`P` grows, so no prefix reaching into them beats the
    prefix of all positive-:math:`q` tokens; the chain over the positive tokens (sorted by their
    float64 ratio, stably: the reference order restricted to them) is the reference chain.
    Rows where some positive-:math:`q` ratio overflows to :math:`+\infty` (tied with the zeros in
    the reference order) are left to the caller. Cost :math:`O(V + K\log K + nKN)` for
    :math:`K` positive entries. Returns ``(value, mask, error bound, nodes)``.
    """
    from .wor import wor_chain

    V = p.size
    pos = np.flatnonzero(q > 0)
    if pos.size > WOR_SMALL_SUPPORT or pos.size >= V:
        return None
    with np.errstate(over="ignore"):
        r = p[pos] / q[pos]
    if not bool(np.all(np.isfinite(r))):
        return None
    o = pos[np.argsort(r, kind="stable")]
    ch = wor_chain(q[o], n)
    f = np.concatenate([[1.0], 1.0 + np.cumsum(p[o]) - ch.Q])
    k = int(np.argmin(f))
    mask = np.zeros(V, dtype=bool)
    mask[o[:k]] = True
    return float(f[k]), mask, float(np.max(ch.error, initial=0.0)), ch.nodes


def _greedy(p: np.ndarray, scheme: Greedy | Hub) -> tuple[np.ndarray, np.ndarray]:
    q = np.broadcast_to(scheme.q, p.shape)
    if isinstance(scheme, Hub):
        D = np.zeros(scheme.q.shape, dtype=bool)
        np.put_along_axis(D, np.asarray(scheme.hub)[..., None], True, axis=-1)
    else:
        D = scheme.fixed_mask()
    D = np.broadcast_to(D, q.shape)
    rest = np.sum(np.where(D, 0.0, q), axis=-1, keepdims=True)
    qprime = np.where(D, 0.0, q / rest)
    value = np.sum(np.where(D, p, np.minimum(p, qprime)), axis=-1)
    mask = D | (p < qprime)
    return value, mask


def solve_prefix(p: np.ndarray, scheme: Scheme) -> Result:
    """Sorted-prefix solver for IID, Greedy, Hub and WithoutReplacement (``n <= 3``)."""
    t0 = time.perf_counter()
    single = p.ndim == 1 and not scheme.is_batched
    p2 = np.atleast_2d(p)
    if scheme.is_batched and p2.shape[0] == 1:
        p2 = np.broadcast_to(p2, (scheme.batch_shape[0], p2.shape[1]))
    info: dict[str, object] = {"error_bound": 0.0}
    if isinstance(scheme, (Greedy, Hub)):
        value, mask = _greedy(p2, scheme)
    else:
        q2 = np.broadcast_to(np.atleast_2d(scheme.q), p2.shape)
        if isinstance(scheme, IID) or scheme.n == 1:
            value, mask = prefix_iid(p2, q2, scheme.n)
        else:
            value, mask = _prefix_wor(p2, q2, scheme.n, info)
            info["note"] = (
                "prefix chain for sampling without replacement (spectheory.solvers.wor; "
                "error_bound bounds |value - exact|)"
            )
    info["time_s"] = time.perf_counter() - t0
    return Result.from_rows(
        value,
        mask,
        single=single,
        status=Status.OPTIMAL,
        method="prefix",
        scheme=scheme.name,
        info=info,
    )


def _supports(scheme: Scheme) -> str | None:
    if isinstance(scheme, (IID, Greedy, Hub)):
        return None
    if isinstance(scheme, WithoutReplacement):
        # Any n: Q(H_k^n) along the chain by spectheory.solvers.wor (docs/without_replacement.md).
        return None
    return f"no sorted-prefix theorem for {type(scheme).__name__} schemes"


register(SolverEntry("prefix", "numpy", _supports, solve_prefix, priority=10))
