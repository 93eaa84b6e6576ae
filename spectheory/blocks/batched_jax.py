r"""JAX core of :func:`~spectheory.blocks.block_acceptance_batched` (``backend="jax"``).

Pure, shape-static functions of arrays: a user can call them inside their own
:func:`jax.jit` (for instance on model outputs that already live on an accelerator). They follow
the numpy reference in :mod:`spectheory.blocks.batched` line by line, with the same conventions:

* a ratio :math:`\min(a/b, 1)` with :math:`b = 0` is read as its limit, 1 when :math:`a > 0` and
  0 otherwise;
* Sun et al.'s :math:`h_i` is 1 where its denominator is 0.

Shapes: ``R`` rows (context :math:`\times` sample), vocabulary ``V``, chain depth
:math:`\gamma`; ``ps`` is ``(gamma + 1, R, V)``, ``qs`` ``(gamma, R, V)``, tokens ``(gamma, R)``.
The dtype is the caller's: :func:`~spectheory.blocks.block_acceptance_batched` runs them in
float64 inside a local 64-bit context (the caller's JAX configuration is untouched).

Subnormal numbers. XLA flushes subnormal results (below :math:`2.2\times10^{-308}` in float64)
to zero on CPU and GPU, where numpy keeps them. The results agree with the numpy functions to
:math:`10^{-13}` whenever the drafted tokens were drawn from the draft rows (so
:math:`q(x) > 0`, and :math:`q(x) > 10^{-295}` with overwhelming probability) and no input entry
is subnormal; they may differ for hand-picked tokens of (near) zero draft mass that follow a
subnormal weight.

References
----------
Leviathan, Kalman, Matias, *Fast Inference from Transformers via Speculative Decoding*,
arXiv:2211.17192 (token-level acceptance :math:`\min(1, p/q)`).
Sun, Mendlovic, Leviathan, Aharoni, Beirami, Ro, Suresh, *Block Verification Accelerates
Speculative Decoding*, arXiv:2403.10444 (block verification, the :math:`h_i`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "block_h_jax",
    "block_lengths_jax",
    "draw_jax",
    "sd_acceptance_jax",
    "sd_lengths_jax",
]

Array = jax.Array


def _at(rows: Array, x: Array) -> Array:
    """``rows[r, x[r]]`` for every row ``r``."""
    return jnp.take_along_axis(rows, x[:, None], axis=1)[:, 0]


def _ratio(num: Array, den: Array) -> Array:
    r""":math:`\min(\text{num}/\text{den}, 1)`, with ``den = 0`` read as the limit."""
    safe = jnp.where(den > 0, den, jnp.ones_like(den))
    r = jnp.minimum(num / safe, 1.0)
    return jnp.where(den > 0, r, jnp.where(num > 0, 1.0, 0.0)).astype(r.dtype)


def sd_acceptance_jax(p_x: Any, q_x: Any) -> Array:
    r"""Token-level speculative-sampling acceptance of drafted tokens, elementwise.

    .. math::

        a(x) = \min\!\Bigl(1, \frac{p(x)}{q(x)}\Bigr),
        \qquad a(x) = \mathbb{1}[p(x) > 0] \text{ when } q(x) = 0

    (Leviathan et al., arXiv:2211.17192). Same as :func:`spectheory.blocks.batched.sd_acceptance`.

    Parameters
    ----------
    p_x, q_x
        Target and draft probabilities of the drafted tokens, any equal shapes.

    Returns
    -------
    jax.Array
        Acceptance probabilities in :math:`[0, 1]`, the shape of ``p_x``.
    """
    p_x = jnp.asarray(p_x)
    return _ratio(p_x, jnp.asarray(q_x, dtype=p_x.dtype))


def block_h_jax(ps: Any, qs: Any, xs: Any) -> Array:
    r"""Sun et al.'s block-verification acceptances :math:`h_1, \dots, h_\gamma` of ``R`` rows.

    With :math:`p_i = p(\cdot \mid x^{i})`, :math:`q_i = q(\cdot \mid x^{i})` and the drafted
    tokens :math:`x_1, \dots, x_\gamma` of a row, the weights are

    .. math::

        w_0 = 1, \qquad w_{i+1} = \min\!\Bigl(w_i\, \frac{p_i(x_{i+1})}{q_i(x_{i+1})}, 1\Bigr),

    and (Sun et al., arXiv:2403.10444, block verification)

    .. math::

        h_i = \frac{\sum_y \bigl[w_i\, p_i(y) - q_i(y)\bigr]_+}
                   {\sum_y \bigl[q_i(y) - w_i\, p_i(y)\bigr]_+}
        \quad (1 \le i < \gamma), \qquad h_\gamma = w_\gamma,

    with :math:`h_i = 1` where the denominator is 0 and the ratio in :math:`w` read as its limit
    when :math:`q_i(x_{i+1}) = 0`. Both sums are taken over nonnegative terms (no cancellation).

    Parameters
    ----------
    ps
        ``(gamma + 1, R, V)``: ``ps[i, r]`` is the target row :math:`p_i` of row ``r`` (or a
        sequence of ``gamma + 1`` arrays ``(R, V)``; ``ps[gamma]`` is not used).
    qs
        ``(gamma, R, V)``: the draft rows the tokens were drawn from (or a sequence of ``gamma``
        arrays ``(R, V)``, which spares stacking rows already on the device).
    xs
        ``(gamma, R)`` integer drafted tokens.

    Returns
    -------
    jax.Array
        ``(gamma, R)``; row ``i - 1`` is :math:`h_i`. Equal to
        :func:`spectheory.blocks.batched.block_h` to :math:`10^{-13}` (module docstring for the
        subnormal caveat).
    """
    xs = jnp.asarray(xs)
    g = xs.shape[0]
    p0 = jnp.asarray(ps[0])
    dt = p0.dtype
    w = jnp.ones(xs.shape[1], dtype=dt)
    h = []
    for i in range(g):  # gamma is static: unrolled
        p_i, q_i = jnp.asarray(ps[i], dtype=dt), jnp.asarray(qs[i], dtype=dt)
        p_x = _at(p_i, xs[i])
        q_x = _at(q_i, xs[i])
        # w * (p/q): the ratio first keeps it out of the subnormal range for tiny p(x), q(x)
        safe = jnp.where(q_x > 0, q_x, jnp.ones_like(q_x))
        lim = jnp.where((w > 0) & (p_x > 0), 1.0, 0.0).astype(dt)
        w_next = jnp.where(q_x > 0, jnp.minimum(w * (p_x / safe), 1.0), lim)
        if i > 0:
            diff = p_i * w[:, None] - q_i
            s = jnp.maximum(diff, 0.0).sum(axis=1)
            d = -jnp.minimum(diff, 0.0).sum(axis=1)
            h.append(jnp.where(d > 0, s / jnp.where(d > 0, d, 1.0), 1.0).astype(dt))
        w = w_next
    h.append(w)
    return jnp.stack(h)


def sd_lengths_jax(acc: Any, eta: Any) -> Array:
    r"""Accepted lengths of token-level speculative sampling down a chain.

    .. math::

        \tau = \max\{k : \eta_i \le a_i \text{ for all } i \le k\}
             = \sum_{k=1}^{\gamma} \prod_{i=1}^{k} \mathbb{1}[\eta_i \le a_i]

    (stop at the first rejection; Leviathan et al., arXiv:2211.17192).

    Parameters
    ----------
    acc
        ``(gamma, R)`` acceptance probabilities (:func:`sd_acceptance_jax`).
    eta
        ``(gamma, R)`` uniforms on :math:`[0, 1)`.

    Returns
    -------
    jax.Array
        ``(R,)`` integer accepted draft tokens per row.
    """
    ok = (jnp.asarray(eta) <= jnp.asarray(acc)).astype(jnp.int32)
    return jnp.cumprod(ok, axis=0).sum(axis=0)


def block_lengths_jax(h: Any, eta: Any) -> Array:
    r"""Accepted lengths of block verification: the largest :math:`i` with
    :math:`\eta_i \le h_i`, 0 when there is none (Sun et al., arXiv:2403.10444).

    .. math::

        \tau = \max\bigl(\{0\} \cup \{i : \eta_i \le h_i\}\bigr)

    Parameters
    ----------
    h
        ``(gamma, R)`` from :func:`block_h_jax`.
    eta
        ``(gamma, R)`` uniforms on :math:`[0, 1)`.

    Returns
    -------
    jax.Array
        ``(R,)`` integer accepted draft tokens per row.
    """
    h = jnp.asarray(h)
    ok = jnp.asarray(eta) <= h
    idx = jnp.arange(1, h.shape[0] + 1, dtype=jnp.int32)[:, None]
    return jnp.where(ok, idx, 0).max(axis=0)


def _first_positive(c: Array, u: Array, mass: Array) -> tuple[Array, Array]:
    """Per row: the first ``j`` with ``c[j] > u`` and ``mass[j] > 0``, else the last ``j`` with
    ``mass[j] > 0``."""
    pos = mass > 0
    ok = (c > u[:, None]) & pos
    last = mass.shape[1] - 1 - jnp.argmax(pos[:, ::-1], axis=1)
    return jnp.where(ok.any(axis=1), jnp.argmax(ok, axis=1), last)


def draw_jax(key: Any, q: Any) -> Array:
    r"""One token per row of ``q`` by the inverse CDF; never a token of zero mass.

    With :math:`c_j = \sum_{k \le j} q_k` and :math:`u \sim U[0, 1)`, the token is the first
    :math:`j` with :math:`c_j > u\, c_{V-1}` **and** :math:`q_j > 0`. For a monotone prefix sum the
    second condition is implied (:math:`c_j > c_{j-1}` needs :math:`q_j > 0`); it guards against
    rounding, where the last token of positive mass is taken.

    The prefix sum is taken in two levels (a long prefix sum is slow in XLA on a CPU): the row is
    cut into :math:`\lceil V / b \rceil` blocks of :math:`b = \lceil \sqrt V\, \rceil` tokens
    (zero-padded), the block is drawn from the prefix sums of the block masses, then the token
    inside it from :math:`C_{\text{before}} + ` the prefix sums of the block's entries. In exact
    arithmetic this is the same token; the rules above make both levels pick positive mass.

    Parameters
    ----------
    key
        A JAX PRNG key.
    q
        ``(R, V)`` nonnegative rows (normalised or not), each with positive total mass.

    Returns
    -------
    jax.Array
        ``(R,)`` integer tokens with ``q[r, x[r]] > 0``.
    """
    q = jnp.asarray(q)
    R, V = q.shape
    b = math.isqrt(V - 1) + 1  # ceil(sqrt(V))
    nb = -(-V // b)
    blocks = jnp.pad(q, ((0, 0), (0, nb * b - V))).reshape(R, nb, b)
    mass = blocks.sum(axis=2)  # (R, nb)
    cb = jnp.cumsum(mass, axis=1)
    u = jax.random.uniform(key, (R,), dtype=q.dtype) * cb[:, -1]
    k = _first_positive(cb, u, mass)  # the block
    before = jnp.where(k > 0, jnp.take_along_axis(cb, jnp.maximum(k - 1, 0)[:, None], axis=1)[:, 0], 0.0)
    inner = jnp.take_along_axis(blocks, k[:, None, None], axis=1)[:, 0, :]  # (R, b)
    j = _first_positive(before[:, None] + jnp.cumsum(inner, axis=1), u, inner)
    return k * b + j


def _lengths(ps: Any, qs: Any, xs: Array, eta: Array, verifier: str) -> Array:
    """Accepted lengths of all rows for ``verifier`` (``"sd"`` or ``"block"``); ``ps``, ``qs`` as
    in :func:`block_h_jax` (arrays or sequences of per-depth rows)."""
    if verifier == "sd":
        g = xs.shape[0]
        p_x = jnp.stack([_at(jnp.asarray(ps[i]), xs[i]) for i in range(g)])
        q_x = jnp.stack([_at(jnp.asarray(qs[i]), xs[i]) for i in range(g)])
        return sd_lengths_jax(sd_acceptance_jax(p_x, q_x), eta)
    return block_lengths_jax(block_h_jax(ps, qs, xs), eta)


#: jit-compiled entry points used by :func:`~spectheory.blocks.block_acceptance_batched`
#: (compiled once per shape and verifier).
_draw_jit = jax.jit(draw_jax)
_lengths_jit = jax.jit(_lengths, static_argnames="verifier")
