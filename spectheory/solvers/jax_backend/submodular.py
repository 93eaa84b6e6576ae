r"""Independent drafts in JAX: Frank--Wolfe on the Lovász-extension dual, with a gap certificate.

For drafts :math:`\bar x_j \sim q_j` independently, :math:`Q(H^n) = \prod_j q_j(H)` and

.. math::

    \alpha^* = 1 + \min_{H \subseteq \Omega} f(H), \qquad f(H) = p(H) - \prod_{j=1}^n q_j(H),

with :math:`f(\emptyset) = 0`. :math:`f` is submodular (a modular function minus a product of
non-negative increasing modular functions, which is supermodular), so (Edmonds; Fujishige) with
:math:`B(f)` the base polytope

.. math::

    \min_H f(H) = \max_{w \in B(f)} \sum_i \min(w_i, 0),

and the minimum-norm point :math:`w^\star = \arg\min_{w \in B(f)} \|w\|^2` has
:math:`H^\star = \{w^\star < 0\}` as a minimiser. The linear oracle over :math:`B(f)` is Edmonds'
greedy algorithm: sort :math:`w` ascending and take the increments of :math:`f` along that chain
(one sort; Thomas & Pal, arXiv 2511.15898, use the same polymatroid reduction).

Every iterate :math:`w` certifies both sides:

* **lower bound** :math:`\sum_i \min(w_i, 0) \le \min f` (because :math:`w \in B(f)`);
* **upper bound** :math:`\min_k f(\text{first } k \text{ tokens in } w\text{-order})`, evaluated
  for free by the oracle (its chain is the sorted level sets of :math:`w`);

and ``gap = upper - lower`` is the duality gap reported in ``Result.info["gap"]``.

The iterate is held as an explicit convex combination :math:`w = \sum_l \lambda_l a_l` of atoms in
a fixed-size buffer (static shapes for ``jit``/``vmap``). Each iteration makes one *pairwise*
Frank--Wolfe step (weight moves from the away atom to the greedy vertex; Lacoste-Julien & Jaggi,
NeurIPS 2015) followed by one *Wolfe minor step* (move :math:`\lambda` toward the affine
minimiser of :math:`\|w\|^2` over the active atoms, as far as :math:`\lambda \ge 0` allows; the
corrective step of Fujishige--Wolfe's minimum-norm-point algorithm, as in the exact numpy solver
``spectheory.solvers.submodular``). Plain Frank--Wolfe closes the lower bound at a sublinear rate;
this combination closes it to rounding on the instances of ``tests/test_jax_independent.py``.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["ACTIVE_SET_SIZE", "LovaszOut", "alpha_independent"]

Array = Any

#: Default cap on the fixed atom buffer (static under jit). At V = 2000, n = 3 the minimum-norm
#: point of the numpy Fujishige--Wolfe solver has up to ~100 atoms; 128 closes those gaps.
ACTIVE_SET_SIZE: int = 128
#: Atom weights at or below this leave the active set.
_LAMBDA_FLOOR: float = 1e-14
#: A solve of the affine KKT system whose weights miss sum 1 by more than this is not used.
_AFFINE_SUM_TOL: float = 1e-9


class LovaszOut(NamedTuple):
    """Output of :func:`alpha_independent` (leading batch shape of ``p``).

    Attributes
    ----------
    value
        Upper bound :math:`1 + f(H)` of the best set found (the reported :math:`\\alpha^*`).
    lower
        Certified lower bound :math:`1 + \\sum_i \\min(w_i, 0)`.
    witness
        Boolean mask of the best set :math:`H`.
    iterations
        Frank--Wolfe iterations run.
    """

    value: Array
    lower: Array
    witness: Array
    iterations: Array


def _chain(p: Array, qs: Array, order: Array) -> tuple[Array, Array, Array]:
    """Values of :math:`f` on the prefixes of ``order``: returns (F (B, V), sorted p, sorted qs)."""
    ps = jnp.take_along_axis(p, order, axis=-1)
    qss = jnp.take_along_axis(qs, order[:, None, :], axis=-1)  # (B, n, V)
    P = jnp.cumsum(ps, axis=-1)
    Q = jnp.prod(jnp.cumsum(qss, axis=-1), axis=1)
    return P - Q, ps, qss


def _oracle(p: Array, qs: Array, w: Array) -> tuple[Array, Array, Array]:
    """Greedy vertex of :math:`B(f)` minimising :math:`\\langle w, s\\rangle`, plus the best prefix
    (value, length, order) of the chain."""
    B, V = w.shape
    order = jnp.argsort(w, axis=-1, stable=True)
    F, _, _ = _chain(p, qs, order)
    s_sorted = jnp.diff(F, axis=-1, prepend=jnp.zeros((B, 1), F.dtype))
    rows = jnp.arange(B)[:, None]
    s = jnp.zeros_like(w).at[rows, order].set(s_sorted)
    full = jnp.concatenate([jnp.zeros((B, 1), F.dtype), F], axis=-1)
    k = jnp.argmin(full, axis=-1)
    best = jnp.take_along_axis(full, k[:, None], axis=-1)[:, 0]
    mask = jnp.zeros((B, V), bool).at[rows, order].set(jnp.arange(V)[None, :] < k[:, None])
    return s, best, mask


def _set_gram(G: Array, S: Array, k: Array, on: Array) -> Array:
    """Rows ``on`` of the batch: refresh row and column ``k`` of the Gram matrix ``G`` from ``S``."""
    B = S.shape[0]
    rows = jnp.arange(B)
    g = jnp.einsum("bkv,bv->bk", S, S[rows, k])
    Gn = G.at[rows, k, :].set(g).at[rows, :, k].set(g)
    return jnp.where(on[:, None, None], Gn, G)


def _corrective(S: Array, G: Array, lam: Array) -> Array:
    r"""One Wolfe minor step: move the weights :math:`\lambda` toward the minimiser
    :math:`\alpha` of :math:`\|\sum_l \alpha_l a_l\|^2` on the affine hull of the active atoms
    (:math:`\sum_l \alpha_l = 1`), as far as :math:`\lambda \ge 0` allows; atoms whose weight
    reaches zero leave the active set. The norm is convex along the segment, so it never
    increases, and the result is still a convex combination of the atoms."""
    B, K, _ = S.shape
    act = lam > 0
    scale = jnp.max(jnp.abs(G), axis=(1, 2), keepdims=True)
    G = G / jnp.where(scale > 0, scale, 1.0)
    pair = act[:, :, None] & act[:, None, :]
    eye = jnp.eye(K, dtype=S.dtype)
    Ga = jnp.where(pair, G, eye[None])
    M = jnp.zeros((B, K + 1, K + 1), S.dtype)
    M = M.at[:, :K, :K].set(Ga)
    one = act.astype(S.dtype)
    M = M.at[:, :K, K].set(one).at[:, K, :K].set(one)
    rhs = jnp.zeros((B, K + 1), S.dtype).at[:, K].set(1.0)
    alpha = jnp.einsum("bij,bj->bi", jnp.linalg.pinv(M), rhs)[:, :K]
    alpha = jnp.where(act, alpha, 0.0)
    ok = jnp.all(jnp.isfinite(alpha), axis=-1) & (jnp.abs(jnp.sum(alpha, axis=-1) - 1.0) < _AFFINE_SUM_TOL)
    neg = act & (alpha < lam)
    ratio = jnp.where(neg & (alpha < 0), lam / jnp.where(neg, lam - alpha, 1.0), jnp.inf)
    theta = jnp.clip(jnp.min(ratio, axis=-1), 0.0, 1.0)
    theta = jnp.where(ok, theta, 0.0)
    new = lam + theta[:, None] * (alpha - lam)
    new = jnp.where(act & (new > _LAMBDA_FLOOR), new, 0.0)
    new = new / jnp.sum(new, axis=-1, keepdims=True)
    return new


@partial(jax.jit, static_argnames=("max_iter", "active"))
def alpha_independent(
    p: Array, qs: Array, max_iter: int = 500, tol: float = 1e-12, active: int | None = None
) -> LovaszOut:
    r"""Batched :math:`\alpha^*` for independent drafts by pairwise Frank--Wolfe on
    :math:`\min_{w \in B(f)} \tfrac12 \|w\|^2`.

    The iterate is kept as an explicit convex combination :math:`w = \sum_l \lambda_l a_l` of at most
    ``active`` atoms (a fixed-size buffer, so the loop has static shapes). Each step moves weight
    from the *away* atom :math:`a_{\text{away}} = \arg\max_{\lambda_l > 0} \langle w, a_l\rangle`
    to the greedy vertex :math:`s = \arg\min_{s \in B(f)} \langle w, s\rangle`, with exact line
    search :math:`\gamma = \operatorname{clip}(-\langle w, s - a_{\text{away}}\rangle /
    \|s - a_{\text{away}}\|^2, 0, \lambda_{\text{away}})` (Lacoste-Julien & Jaggi, NeurIPS 2015:
    linear convergence on polytopes). When the buffer is full the two lightest atoms are replaced by
    their weighted mean, a point of :math:`B(f)`, so :math:`w` stays in :math:`B(f)` and the lower
    bound stays certified.

    Parameters
    ----------
    p
        Target, shape ``(B, V)``.
    qs
        Draft distributions, shape ``(B, n, V)``.
    max_iter
        Iteration cap (static).
    tol
        Stop when every row's gap ``upper - lower`` is at most ``tol``.
    active
        Size of the atom buffer (static); default ``min(V + 1, ACTIVE_SET_SIZE)``. Memory is
        ``B * active * V`` floats; a buffer smaller than the active set of the minimum-norm point
        still gives a valid certificate, only a slower-closing one.

    Returns
    -------
    LovaszOut
        ``value`` (upper bound, attained by ``witness``), ``lower`` (certified), ``witness``,
        ``iterations``.
    """
    B, V = p.shape
    K = min(V + 1, ACTIVE_SET_SIZE) if active is None else int(active)
    if K < 2:
        raise ValueError(f"argument 'active': need at least 2 atoms, got {K}")
    rows = jnp.arange(B)
    # Start from the vertex of the ratio order p / mean_j q_j (the i.i.d.-like prefix).
    qbar = jnp.mean(qs, axis=1)
    r = jnp.where(qbar > 0, p / jnp.where(qbar > 0, qbar, 1), jnp.inf)
    w0, ub0, m0 = _oracle(p, qs, r)
    lb0 = jnp.sum(jnp.minimum(w0, 0.0), axis=-1)
    S0 = jnp.zeros((B, K, V), w0.dtype).at[:, 0, :].set(w0)
    lam0 = jnp.zeros((B, K), w0.dtype).at[:, 0].set(1.0)

    def cond(state: tuple[Array, ...]) -> Array:
        it, _, _, _, _, ub, lb, _ = state
        return (it < max_iter) & jnp.any(ub - lb > tol)

    def body(state: tuple[Array, ...]) -> tuple[Array, ...]:
        it, S, G, lam, w, ub, lb, mask = state
        # Buffer full: merge the two lightest atoms into their weighted mean (stays in B(f)).
        full = jnp.all(lam > 0, axis=-1)
        i1 = jnp.argmin(lam, axis=-1)
        lam_x = lam.at[rows, i1].set(jnp.inf)
        i2 = jnp.argmin(lam_x, axis=-1)
        l1 = lam[rows, i1]
        l2 = lam[rows, i2]
        tot = l1 + l2
        merged = (l1[:, None] * S[rows, i1] + l2[:, None] * S[rows, i2]) / jnp.where(
            tot > 0, tot, 1.0
        )[:, None]
        S = jnp.where(full[:, None, None], S.at[rows, i1].set(merged), S)
        lam = jnp.where(full[:, None], lam.at[rows, i1].set(tot).at[rows, i2].set(0.0), lam)
        G = _set_gram(G, S, i1, full)
        # Frank--Wolfe vertex and best prefix of its chain.
        s, best, m = _oracle(p, qs, w)
        # Away atom: the active atom with the largest <w, a>.
        scores = jnp.einsum("bkv,bv->bk", S, w)
        scores = jnp.where(lam > 0, scores, -jnp.inf)
        away = jnp.argmax(scores, axis=-1)
        v = S[rows, away]
        gmax = lam[rows, away]
        d = s - v
        dd = jnp.sum(d * d, axis=-1)
        gamma = jnp.clip(-jnp.sum(w * d, axis=-1) / jnp.where(dd > 0, dd, 1.0), 0.0, gmax)
        gamma = jnp.where(dd > 0, gamma, 0.0)
        # New vertex into a free slot (lam == 0; exists after the merge, never the away atom).
        lam_free = lam.at[rows, away].set(jnp.inf)
        free = jnp.argmin(lam_free, axis=-1)
        # An atom equal to s (greedy vertices repeat) takes the weight instead of a new slot.
        same = jnp.all(S == s[:, None, :], axis=-1) & (lam > 0)
        free = jnp.where(jnp.any(same, axis=-1), jnp.argmax(same, axis=-1), free)
        drop = gamma >= gmax
        lam = lam.at[rows, away].set(jnp.where(drop, 0.0, gmax - gamma))
        S = S.at[rows, free].set(s)
        lam = lam.at[rows, free].add(gamma)
        G = _set_gram(G, S, free, jnp.ones((B,), bool))
        lam = _corrective(S, G, lam)
        w = jnp.einsum("bk,bkv->bv", lam, S)
        better = best < ub
        ub = jnp.where(better, best, ub)
        mask = jnp.where(better[:, None], m, mask)
        lb = jnp.maximum(lb, jnp.sum(jnp.minimum(w, 0.0), axis=-1))
        lb = jnp.maximum(lb, jnp.sum(jnp.minimum(s, 0.0), axis=-1))
        return it + 1, S, G, lam, w, ub, lb, mask

    G0 = jnp.zeros((B, K, K), w0.dtype).at[:, 0, 0].set(jnp.sum(w0 * w0, axis=-1))
    state = (jnp.int32(0), S0, G0, lam0, w0, ub0, lb0, m0)
    it, _, _, _, _, ub, lb, mask = lax.while_loop(cond, body, state)
    # ub <= 0 always (the empty set); clip the certified lower bound to it.
    lb = jnp.minimum(lb, ub)
    return LovaszOut(1.0 + ub, 1.0 + lb, mask, jnp.full((B,), it))
