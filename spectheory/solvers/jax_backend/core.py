r"""Pure, jit-compiled functional core of the JAX backend (imports JAX at module import).

Every function here takes JAX (or numpy) arrays whose **last axis is the vocabulary** and any number
of leading batch axes, has fixed output shapes, and can be used inside user code under
:func:`jax.jit`, :func:`jax.vmap` or :func:`jax.grad`-free pipelines. The number of drafts ``n``
is a static (Python ``int``) argument.

The math is the sorted-prefix theorem (Hu et al., arXiv 2502.18779; ``docs/jax.md``): sort tokens by
:math:`r(y) = p(y)/q(y)` ascending (:math:`q(y) = 0 \Rightarrow r = +\infty`), let :math:`H_k` be
the first :math:`k` tokens, :math:`P_k = p(H_k)`, :math:`S_k = q(H_k)`; then for i.i.d. drafts

.. math::

    \alpha^* = \min_{0 \le k \le V} \bigl[1 + P_k - S_k^n\bigr].

Precision
---------
Prefix sums over :math:`V = 256\text{k}` float32 entries lose up to :math:`\sim 10^{-5}` with a
sequential sum. For float32 inputs the prefix sums are **compensated**: a second ``cumsum`` of the
exact rounding residuals of the first (Knuth's error-free TwoSum), so each prefix sum is accurate to
:math:`O(\varepsilon^2 V)` before its final rounding (see :func:`cumsum_compensated`).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "PrefixOut",
    "alpha_greedy",
    "alpha_hub",
    "alpha_iid",
    "alpha_iid_with_order",
    "alpha_wor",
    "alpha_wor_chain_with_order",
    "alpha_wor_with_order",
    "chain_value_precise",
    "cumsum_compensated",
    "exclusive_sums",
    "prefix_mask",
    "ratio_order",
    "sort_by_ratio",
    "wor_rho",
    "wor_step",
]

Array = Any


class PrefixOut(NamedTuple):
    """Output of the sorted-prefix core.

    Attributes
    ----------
    value
        :math:`\\alpha^*`, shape ``batch``.
    k
        Length of the optimal prefix :math:`|H^*|` (int32), shape ``batch``.
    order
        The ascending ratio permutation (int32), shape ``batch + (V,)``; :math:`H^*` is
        ``order[..., :k]``.
    """

    value: Array
    k: Array
    order: Array


# ------------------------------------------------------------------ summation
def _two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """Knuth's error-free transformation: ``a + b = s + e`` exactly."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def cumsum_compensated(x: Array, axis: int = -1) -> tuple[Array, Array]:
    r"""Compensated inclusive prefix sums along ``axis``: returns ``(hi, lo)`` with
    :math:`\sum_{i \le k} x_i \approx \mathrm{hi}_k + \mathrm{lo}_k`.

    Two passes of the platform's ``cumsum`` and error-free transformations in between:

    1. :math:`S = \mathrm{cumsum}(x)` in the input precision (any summation order).
    2. The residual :math:`r_i = x_i - (S_i - S_{i-1})` is formed with Knuth's TwoSum (the
       difference :math:`S_i - S_{i-1}` is split exactly into ``D + e``), so
       :math:`\sum_{i \le k} x_i = S_k + \sum_{i \le k} r_i` holds up to the rounding of the tiny
       :math:`r_i` (telescoping).
    3. ``lo = cumsum(r)``: its own rounding error is relative to :math:`|\sum r|`, the first-pass
       error, so ``hi + lo`` is accurate to :math:`O(\varepsilon^2 V)` instead of
       :math:`O(\varepsilon V)`; measured 5.9e-13 at V = 256k in float32 (plain float32
       ``cumsum``: 1.3e-7; ``docs/jax.md``).

    Unlike an associative scan over double-float pairs, this compiles as fast as ``cumsum``.
    """
    S = jnp.cumsum(x, axis=axis)
    zero = jnp.zeros_like(lax.slice_in_dim(S, 0, 1, axis=axis))
    prev = jnp.concatenate([zero, lax.slice_in_dim(S, 0, S.shape[axis] - 1, axis=axis)], axis=axis)
    D, e = _two_sum(S, -prev)  # S_i - S_{i-1} = D + e exactly
    a, b = _two_sum(x, -D)  # x_i - D = a + b exactly
    r = a + (b - e)
    return S, jnp.cumsum(r, axis=axis)


def _fast_two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """Dekker's FastTwoSum, ``|a| >= |b|``: ``a + b = s + e`` exactly."""
    s = a + b
    return s, b - (s - a)


def _split(a: Array) -> tuple[Array, Array]:
    """``a = hi + lo`` with at most 12 significant bits each (float32) / 27 (float64), by masking
    the low mantissa bits: no multiplication, so an FMA contraction by the compiler (XLA on GPU
    may contract ``a * b + c``) cannot break the split the way it breaks Veltkamp's."""
    if a.dtype == jnp.float64:
        mask, ut = 0xFFFFFFFFF8000000, jnp.uint64
    else:
        mask, ut = 0xFFFFF000, jnp.uint32
    hi = lax.bitcast_convert_type(
        lax.bitcast_convert_type(a, ut) & jnp.asarray(mask, ut), a.dtype
    )
    return hi, a - hi


def _two_prod(a: Array, b: Array) -> tuple[Array, Array]:
    """Dekker's TwoProduct: ``a * b = p + e`` exactly (no overflow/underflow assumed)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _df_mul(ah: Array, al: Array, bh: Array, bl: Array) -> tuple[Array, Array]:
    r"""Double-word product (relative error a few :math:`\varepsilon^2`)."""
    p, e = _two_prod(ah, bh)
    return _fast_two_sum(p, e + (ah * bl + al * bh))


def _df_pow(h: Array, lo: Array, n: int) -> tuple[Array, Array]:
    """:math:`(h + lo)^n` as a double word, by binary powering (static ``n >= 1``)."""
    rh, rl = None, None
    bh, bl = h, lo
    while True:
        if n & 1:
            rh, rl = (bh, bl) if rh is None else _df_mul(rh, rl, bh, bl)
        n >>= 1
        if not n:
            return rh, rl
        bh, bl = _df_mul(bh, bl, bh, bl)


def chain_value_precise(
    P_hi: Array, P_lo: Array, S_hi: Array, S_lo: Array, n: int
) -> Array:
    r""":math:`1 + P - \min(S, 1)^n` from double-word prefix sums, rounded once.

    Every step is an error-free transformation or a double-word operation (Dekker, Knuth), so the
    result is within about one rounding (:math:`\varepsilon/2`, i.e. :math:`3 \cdot 10^{-8}`
    in float32) of the exact value of the double-word inputs; evaluating ``1 + P - S**n`` in the
    working precision instead loses up to :math:`(n + 2)\,\varepsilon` (measured
    :math:`4.1 \cdot 10^{-7}` for float32 on the H100).
    """
    over = (S_hi + S_lo) >= 1.0
    S_hi = jnp.where(over, jnp.ones_like(S_hi), S_hi)
    S_lo = jnp.where(over, jnp.zeros_like(S_lo), S_lo)
    wh, wl = _df_pow(S_hi, S_lo, n)
    # (1 + P_hi) exactly, then + P_lo, - S^n: |1| >= every other term.
    a, ae = _two_sum(jnp.ones_like(P_hi), P_hi)
    b, be = _two_sum(a, -wh)
    return b + (be + (ae + (P_lo - wl)))


def _cumsum(x: Array, compensated: bool) -> Array:
    if compensated:
        hi, lo = cumsum_compensated(x)
        return hi + lo
    return jnp.cumsum(x, axis=-1)


def exclusive_sums(q: Array, compensated: bool = False) -> Array:
    r""":math:`1 - q_i` computed as :math:`\sum_{j \ne i} q_j` (prefix plus suffix sums, last axis):
    no cancellation when ``q`` is one-hot to machine precision."""
    zero = jnp.zeros_like(q[..., :1])
    # shifted (exclusive) prefix and suffix sums: cumsum(q) - q would cancel when a large entry
    # sits among tiny ones (measured: 1 - q_i off by 10% for a draft one-hot to 1e-15, alpha*
    # off by 7e-7 without replacement, tests/test_jax_wor_fast.py)
    before = jnp.concatenate([zero, _cumsum(q, compensated)[..., :-1]], axis=-1)
    after = jnp.concatenate([jnp.flip(_cumsum(jnp.flip(q, -1), compensated), -1)[..., 1:], zero], -1)
    return before + after


# ------------------------------------------------------------------ sorting
#: Compare-exchange passes of :func:`ratio_order`'s fix-up before it checks the order.
FIXUP_PASSES: int = 4


def _argsort_stable(r: Array) -> Array:
    return jnp.argsort(r, axis=-1, stable=True).astype(jnp.int32)


def _exchange(r: Array, o: Array, start: int) -> tuple[Array, Array]:
    """One odd-even transposition pass on pairs ``(start + 2i, start + 2i + 1)`` of the last
    axis: swap where ``(r, o)`` is out of lexicographic order."""
    V = r.shape[-1]
    m = (V - start) // 2
    if m == 0:
        return r, o
    sl = slice(start, start + 2 * m)
    rp = r[..., sl].reshape(*r.shape[:-1], m, 2)
    op = o[..., sl].reshape(*o.shape[:-1], m, 2)
    a, b = rp[..., 0], rp[..., 1]
    ia, ib = op[..., 0], op[..., 1]
    sw = (a > b) | ((a == b) & (ia > ib))
    rn = jnp.stack([jnp.where(sw, b, a), jnp.where(sw, a, b)], axis=-1).reshape(*r.shape[:-1], 2 * m)
    on = jnp.stack([jnp.where(sw, ib, ia), jnp.where(sw, ia, ib)], axis=-1).reshape(
        *o.shape[:-1], 2 * m
    )
    return r.at[..., sl].set(rn), o.at[..., sl].set(on)


def ratio_order(r: Array) -> Array:
    r"""Stable ascending argsort of non-negative ratios ``r`` (last axis), as int32.

    XLA sorts one unsigned 64-bit key several times faster than it argsorts floats (CPU, 4 x
    32k float64: 5.3 ms against 26 ms for ``jnp.argsort(stable=True)``; a float sort with an
    index payload takes the slow path too). So the key packs the high bits of the ratio's
    float64 pattern (order-preserving for :math:`r \ge 0`) above the token index
    (:math:`\lceil\log_2 V\rceil` bits): sorting it orders tokens by ratio, ties by index,
    except inside groups whose ratios agree in the kept bits (relative difference below
    :math:`2^{-34}` at V = 256k), which come in index order. A few compare-exchange passes on the
    full ``(ratio, index)`` pairs repair those, and the result is *checked* to be the stable
    order: if any row is not, the whole batch takes ``jnp.argsort(stable=True)``
    (``lax.cond``), so the permutation is always exactly the stable argsort's. Without 64-bit
    types (float32 without x64) the argsort runs directly. (Under ``jax.vmap`` the ``lax.cond``
    becomes a select and both branches run: pass the batch as a leading axis instead.)
    """
    if jnp.dtype(r.dtype) != jnp.dtype(jnp.float64):
        return _argsort_stable(r)
    V = r.shape[-1]
    ib = max(1, (V - 1).bit_length())
    bits = lax.bitcast_convert_type(r, jnp.uint64) & jnp.uint64(0x7FFFFFFFFFFFFFFF)
    idx = lax.broadcasted_iota(jnp.uint64, r.shape, r.ndim - 1)
    key = ((bits >> jnp.uint64(ib)) << jnp.uint64(ib)) | idx
    o = (jnp.sort(key, axis=-1) & jnp.uint64((1 << ib) - 1)).astype(jnp.int32)
    rs = jnp.take_along_axis(r, o, axis=-1)
    for k in range(FIXUP_PASSES):
        rs, o = _exchange(rs, o, k % 2)
    ok = (rs[..., :-1] < rs[..., 1:]) | ((rs[..., :-1] == rs[..., 1:]) & (o[..., :-1] < o[..., 1:]))
    return lax.cond(jnp.all(ok), lambda _: o, lambda _: _argsort_stable(r), None)


def sort_by_ratio(p: Array, q: Array) -> tuple[Array, Array, Array]:
    r"""Sort tokens by :math:`p/q` ascending (``q = 0`` last, stable on ties, like numpy's
    ``argsort(kind="stable")``). Returns ``(p_sorted, q_sorted, order)``.

    One stable argsort of the ratio key (:func:`ratio_order`: a packed integer key, checked),
    then two gathers. (A single ``lax.sort`` carrying ``p``, ``q`` and the index as payloads was
    measured 3.4x slower on an H100: multi-operand sorts do not take the fast key/index path;
    ``benchmarks/gpu_variants.py``.)
    """
    pos = q > 0
    r = jnp.where(pos, p / jnp.where(pos, q, 1), jnp.inf)
    order = ratio_order(r)
    ps = jnp.take_along_axis(p, order, axis=-1)
    qs = jnp.take_along_axis(q, order, axis=-1)
    return ps, qs, order


def prefix_mask(order: Array, k: Array) -> Array:
    """Boolean mask of the prefix ``order[..., :k]`` in token order (shape of ``order``)."""
    V = order.shape[-1]
    in_prefix = lax.broadcasted_iota(jnp.int32, order.shape, order.ndim - 1) < k[..., None]
    flat_o = order.reshape(-1, V)
    flat_in = in_prefix.reshape(-1, V)
    rows = jnp.arange(flat_o.shape[0])[:, None]
    mask = jnp.zeros(flat_o.shape, dtype=bool).at[rows, flat_o].set(flat_in)
    return mask.reshape(order.shape)


def _finish(chain: Array) -> tuple[Array, Array]:
    """Prepend k = 0 (value 1) to chain values ``(..., V)``; return (min value, argmin k)."""
    one = jnp.ones((*chain.shape[:-1], 1), chain.dtype)
    full = jnp.concatenate([one, chain], axis=-1)
    k = jnp.argmin(full, axis=-1).astype(jnp.int32)
    value = jnp.take_along_axis(full, k[..., None], axis=-1)[..., 0]
    return value, k


def _default_compensated(x: Array, compensated: bool | None) -> bool:
    if compensated is not None:
        return compensated
    return jnp.dtype(x.dtype) != jnp.dtype(jnp.float64)


# ------------------------------------------------------------------ i.i.d.
@partial(jax.jit, static_argnames=("n", "compensated"))
def alpha_iid_with_order(p: Array, q: Array, n: int, compensated: bool | None = None) -> PrefixOut:
    r""":math:`\alpha^*` for ``n`` i.i.d. drafts, with the raw witness (prefix length and
    permutation).

    .. math:: \alpha^* = \min_k \bigl[1 + P_k - S_k^n\bigr]

    Parameters
    ----------
    p, q
        Target and draft distributions, shape ``batch + (V,)``, same float dtype.
    n
        Number of drafts (static).
    compensated
        Compensated prefix sums (default: on for float32/bfloat16, off for float64).

    Returns
    -------
    PrefixOut
        ``(value, k, order)``; :math:`H^* = ` ``order[..., :k]``.
    """
    comp = _default_compensated(p, compensated)
    ps, qs, order = sort_by_ratio(p, q)
    if comp:
        # Double-word chain: the float32 error is about one final rounding (docs/jax.md).
        P_hi, P_lo = cumsum_compensated(ps)
        S_hi, S_lo = cumsum_compensated(qs)
        chain = chain_value_precise(P_hi, P_lo, S_hi, S_lo, n)
    else:
        P = _cumsum(ps, comp)
        S = jnp.minimum(_cumsum(qs, comp), 1.0)
        chain = 1.0 + P - S**n
    value, k = _finish(chain)
    return PrefixOut(value, k, order)


@partial(jax.jit, static_argnames=("n", "compensated"))
def alpha_iid(p: Array, q: Array, n: int, compensated: bool | None = None) -> tuple[Array, Array]:
    r""":math:`\alpha^*` for ``n`` i.i.d. drafts and the optimal prefix length :math:`|H^*|`.

    The jit-compiled functional form of ``optimal_acceptance(p, IID(q, n), backend="jax")``:
    fixed shapes, any leading batch axes, usable inside :func:`jax.jit` / :func:`jax.vmap`. See
    :func:`alpha_iid_with_order` for the permutation.
    """
    out = alpha_iid_with_order(p, q, n, compensated)
    return out.value, out.k


# ------------------------------------------------------------------ without replacement
#: Trapezoid step in :math:`s = \log t` of the any-``n`` without-replacement quadrature (the rule
#: converges exponentially; 1/8 and 1/16 agree with the adaptive numpy chain to 2e-15). The
#: default of :func:`alpha_wor_with_order` is the coarser :func:`wor_step`.
WOR_STEP: float = 1.0 / 8.0


def wor_step(n: int) -> float:
    r"""Default trapezoid step for ``n`` drafts: :math:`1/5` for :math:`n \le 8`, :math:`1/6`
    above (107 and 128 nodes instead of 171 at ``WOR_STEP``). The rule's error falls like
    :math:`e^{-\pi^2/h}` (the integrand in :math:`s` is analytic for
    :math:`|\mathrm{Im}\, s| < \pi/2`), with a constant growing with :math:`n`; measured against
    the numpy chain on softmax pairs (V = 512-20000, :math:`\rho` down to 0.006): largest
    difference 7.8e-16 at :math:`h = 1/5`, :math:`n \le 8` and at :math:`h = 1/6`,
    :math:`n \le 16`; :math:`h = 1/5` reaches 2.1e-13 at :math:`n = 16` and :math:`h = 1/4`
    1.9e-10 (hence the split). ``tests/test_jax.py`` checks the defaults against numpy."""
    return 1.0 / 5.0 if n <= 8 else 1.0 / 6.0
#: Integration range in :math:`t` (the tail below ``WOR_T_LO`` is :math:`O(t^{m+1})`, ~1e-15).
WOR_T_LO: float = 1e-5
#: Upper end of the :math:`t` range: the tail above it is :math:`\lesssim e^{-\rho T}` with
#: :math:`\rho` the mass outside the top ``n - 1`` tokens, negligible when :math:`\rho \ge`
#: :data:`WOR_RHO_MIN` (rows below are flagged by :func:`wor_rho`).
WOR_T_HI: float = 2e4
#: Rows whose mass outside the top ``n - 1`` tokens is below this are outside the quadrature's
#: accuracy contract (the numpy path deflates the largest token there).
WOR_RHO_MIN: float = 1e-2


#: Largest error estimate of :func:`.wor_moments.alpha_wor_fast` accepted in float64 (the numpy
#: chain's own target, ``spectheory.solvers.wor.WOR_TARGET``) ...
WOR_FAST_TOL: float = 1e-11
#: ... and in float32 (the backend's float32 contract, ``solve.FLOAT32_ERROR_BOUND``, plus the
#: analytic parts).
WOR_FAST_TOL32: float = 2e-6


def wor_rho(q: Array, n: int) -> Array:
    """Mass outside the ``n - 1`` largest entries of each row of ``q`` (summed directly)."""
    if n <= 1:
        return jnp.sum(q, axis=-1)
    top, _ = lax.top_k(q, n - 1)
    small = jnp.sum(q, axis=-1) - jnp.sum(top, axis=-1)
    # Recompute as a direct sum of the rest when the difference cancels.
    thresh = top[..., -1:]
    direct = jnp.sum(jnp.where(q < thresh, q, 0.0), axis=-1)
    return jnp.where(small < 1e-3, direct, small)


def _cumlogsumexp(x: Array) -> Array:
    r"""Inclusive :math:`\log \sum_{i \le k} e^{x_i}` along the last axis with one ``cumsum``
    (shifted by the row maximum). Terms below :math:`e^{\max x}` times the underflow threshold are
    dropped: an *absolute* error of :math:`10^{-308}` (float64) relative to the largest term, which
    is what the quadrature needs. (``lax.cumlogsumexp`` lowers to an associative scan on CPU/GPU,
    much slower to compile and run.)"""
    M = jnp.max(x, axis=-1, keepdims=True)
    M = jnp.where(jnp.isfinite(M), M, 0.0)
    return jnp.log(jnp.cumsum(jnp.exp(x - M), axis=-1)) + M


def _wor_quad(qs: Array, n: int, step: float, t_lo: float, t_hi: float) -> Array:
    r""":math:`\sum_{m=2}^{n-1} G_m(H_k)` for every prefix, by the trapezoidal rule in
    :math:`s = \log t` of :math:`G_m = \int e^{-t} e_m(c(t))\,dt`, :math:`c_i = e^{q_i t} - 1`.

    The elementary symmetric polynomials along the chain follow
    :math:`e_m^{(k)} = \sum_{i \le k} c_i e_{m-1}^{(i-1)}` (positive terms only), evaluated in
    logarithms with :func:`_cumlogsumexp` (no overflow at large ``t``).
    """
    J = math.ceil((math.log(t_hi) - math.log(t_lo)) / step)
    s0 = math.log(t_lo)
    neg_inf = jnp.full((*qs.shape[:-1], 1), -jnp.inf, qs.dtype)

    def node(j: Array, acc: Array) -> Array:
        s = s0 + step * j.astype(qs.dtype)
        t = jnp.exp(s)
        qt = qs * t
        big = qt > 1.0
        safe_small = jnp.where(big, 1.0, qt)
        safe_big = jnp.where(big, qt, 1.0)
        logc = jnp.where(
            big, safe_big + jnp.log(-jnp.expm1(-safe_big)), jnp.log(jnp.expm1(safe_small))
        )
        L = _cumlogsumexp(logc)
        w = jnp.where((j == 0) | (j == J), 0.5, 1.0) * step
        for _m in range(2, n):
            shifted = jnp.concatenate([neg_inf, L[..., :-1]], axis=-1)
            L = _cumlogsumexp(logc + shifted)
            acc = acc + w * jnp.exp(s - t + L)
        return acc

    return lax.fori_loop(0, J + 1, node, jnp.zeros_like(qs))


def _wor_chain(ps: Array, qs: Array, n: int, comp: bool, step: float, t_hi: float) -> Array:
    r"""Chain values :math:`1 + P_k - Q(H_k^n)` for sampling without replacement, any ``n``.

    :math:`Q(H^n) = q(H) - \lambda_H \sum_{m=1}^{n-1} G_m(H)` (``docs/theory.md`` section 4;
    the any-``n`` chain of :mod:`spectheory.solvers.wor`): :math:`\lambda_H` a suffix sum of the
    sorted ``q`` (never :math:`1 - S_k`), :math:`G_1 = \sum_{i \in H} q_i/(1 - q_i)` with
    :math:`1 - q_i` the sum of the other entries, :math:`G_{m \ge 2}` by :func:`_wor_quad`.
    """
    P = _cumsum(ps, comp)
    S = _cumsum(qs, comp)
    if n == 1:
        return 1.0 + P - S
    suffix = jnp.flip(_cumsum(jnp.flip(qs, -1), comp), -1)
    lam = jnp.concatenate([suffix[..., 1:], jnp.zeros_like(suffix[..., :1])], axis=-1)
    rest = exclusive_sums(qs, comp)
    pos = qs > 0
    a = jnp.where(pos, qs / jnp.where(pos, rest, 1), 0.0)
    G = _cumsum(a, comp)
    if n >= 3:
        G = G + _wor_quad(qs, n, step, WOR_T_LO, t_hi)
    Q = jnp.clip(S - lam * G, 0.0, 1.0)
    return 1.0 + P - Q


@partial(jax.jit, static_argnames=("n", "compensated", "step", "t_hi"))
def alpha_wor_chain_with_order(
    p: Array,
    q: Array,
    n: int,
    compensated: bool | None = None,
    step: float | None = None,
    t_hi: float = WOR_T_HI,
) -> PrefixOut:
    r"""The full quadrature chain for ``n`` drafts without replacement (kept as a reference).

    Every prefix of the ratio order, :math:`Q(H_k^n)` from the closed form (``n <= 2``) or the
    log-time trapezoid quadrature of :func:`_wor_quad` (``n >= 3``): ``(n - 2)`` log-domain
    cumulative sums over :math:`V` per node. **Known inaccuracy** for ``n >= 3``: a prefix
    :math:`e_{m-1}` that underflows relative to its row's largest term can later be multiplied by a
    huge :math:`c_i = e^{q_i t} - 1`; on a softmax row at temperature 0.5 (V = 32k, n = 16,
    :math:`\rho = 0.011`) chain values were off by 4.7e-4 and :math:`\alpha^*` by 2.1e-7.
    :func:`alpha_wor_with_order` uses :func:`.wor_moments.alpha_wor_fast` instead (ring form, with
    an error estimate per row).
    """
    comp = _default_compensated(p, compensated)
    ps, qs, order = sort_by_ratio(p, q)
    h = wor_step(n) if step is None else float(step)
    value, k = _finish(_wor_chain(ps, qs, n, comp, h, t_hi))
    return PrefixOut(value, k, order)


@partial(jax.jit, static_argnames=("n", "compensated"))
def alpha_wor_with_order(p: Array, q: Array, n: int, compensated: bool | None = None) -> PrefixOut:
    r""":math:`\alpha^*` for ``n`` drafts sampled without replacement, with the raw witness.

    ``n <= 2``: the prefix chain of the ratio order with the closed form of :math:`Q(H_k^n)` (the
    prefix property for sampling without replacement: ``docs/without_replacement.md`` section 6).
    ``n >= 3``: :func:`.wor_moments.alpha_wor_fast` (moments of the small tokens, exact ring-form
    factors for the large ones, pruned groups); rows outside its accuracy contract (error
    estimate above :data:`WOR_FAST_TOL` in float64, :data:`WOR_FAST_TOL32` in float32) get
    ``value = nan`` rather than an unvouched number (the API recomputes them with numpy; call
    :func:`.wor_moments.alpha_wor_fast` for the estimate itself). Returns ``(value, k, order)``.
    """
    if n <= 2:
        return alpha_wor_chain_with_order(p, q, n, compensated)
    from .wor_moments import alpha_wor_fast

    out = alpha_wor_fast(p, q, n, compensated)
    tol = WOR_FAST_TOL if jnp.dtype(p.dtype) == jnp.dtype(jnp.float64) else WOR_FAST_TOL32
    value = jnp.where(out.error <= tol, out.value, jnp.nan)
    return PrefixOut(value, out.k, out.order)


@partial(jax.jit, static_argnames=("n", "compensated"))
def alpha_wor(p: Array, q: Array, n: int, compensated: bool | None = None) -> tuple[Array, Array]:
    """:math:`\alpha^*` and :math:`|H^*|` for ``n`` drafts without replacement (see
    :func:`alpha_wor_with_order`)."""
    out = alpha_wor_with_order(p, q, n, compensated)
    return out.value, out.k


# ------------------------------------------------------------------ greedy / hub
def _fixed_closed_form(p: Array, q: Array, D: Array) -> tuple[Array, Array]:
    rest = jnp.sum(jnp.where(D, 0.0, q), axis=-1, keepdims=True)
    qprime = jnp.where(D, 0.0, q / rest)
    value = jnp.sum(jnp.where(D, p, jnp.minimum(p, qprime)), axis=-1)
    mask = D | (p < qprime)
    return value, mask


@partial(jax.jit, static_argnames=("n",))
def alpha_greedy(p: Array, q: Array, n: int) -> tuple[Array, Array]:
    r""":math:`\alpha^*` and witness mask for greedy drafts (Hu et al., arXiv 2502.18779).

    :math:`D` = top-``(n-1)`` tokens of ``q`` (ties: smaller index first, as
    :func:`jax.lax.top_k`), and
    :math:`\alpha^* = p(D) + \sum_{y \notin D} \min\bigl(p(y), q(y)/q(\Omega \setminus D)\bigr)`,
    :math:`H^* = D \cup \{y : p(y) < q(y)/q(\Omega\setminus D)\}`. No sort: ``n - 1`` passes
    of ``argmax`` (first index on ties, the same set as ``lax.top_k``, which on the CPU sorts the
    whole row whatever ``k``: 25 ms for 4 x 32k).
    """
    iota = lax.broadcasted_iota(jnp.int32, q.shape, q.ndim - 1)
    D = jnp.zeros(q.shape, dtype=bool)
    for _ in range(n - 1):
        a = jnp.argmax(jnp.where(D, -jnp.inf, q), axis=-1).astype(jnp.int32)
        D = D | (iota == a[..., None])
    return _fixed_closed_form(p, q, D)


@jax.jit
def alpha_hub(p: Array, q: Array) -> tuple[Array, Array]:
    """:math:`\\alpha^*` and witness mask for the SpecHub law (hub = ``argmax q``, first on ties):
    the greedy closed form with :math:`D = \\{a\\}`."""
    V = q.shape[-1]
    a = jnp.argmax(q, axis=-1)
    D = a[..., None] == jnp.arange(V, dtype=a.dtype)
    return _fixed_closed_form(p, q, D)
