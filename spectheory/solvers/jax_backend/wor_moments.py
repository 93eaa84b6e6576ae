r"""Fast :math:`\alpha^*` without replacement on JAX: moments, few exact tokens, pruned groups.

The chain of :func:`.core.alpha_wor_with_order` evaluates, at each of ~110 quadrature nodes, the
elementary symmetric polynomials of all :math:`V` tokens along the ratio order (``(n - 2)`` log-sums
over :math:`V` per node): about 100 times one sort. This module computes the same minimum with
fixed shapes from far less work, following the numpy fast path (:mod:`spectheory.solvers.wor_fast`,
``docs/without_replacement.md`` section 7) but with the quadrature of the JAX chain:

**Integrand in ring form.** With :math:`a_i = e^{-q_i t}`, :math:`b_i = 1 - a_i`,

.. math::

    Q(H^n) = q(H) - \lambda_H \Bigl(G_1(H) + \int_0^\infty e^{-t\lambda_H}
    \sum_{m=2}^{n-1} [z^m] \prod_{i\in H}(a_i + z b_i)\,dt\Bigr),

(:math:`e^{-t} e_m(e^{q t} - 1) = e^{-t\lambda_H} [z^m]\prod_{i \in H}(a_i + z b_i)`): the
polynomial is the law of the number of tokens of :math:`H` that have "rung" by time :math:`t` in the
exponential race, so every coefficient lies in :math:`[0, 1]`; :math:`G_1` is the closed form of the
JAX chain.

**Small and big tokens.** The tokens with :math:`q_i > X/T` (``X = 0.5``, :math:`T` the range
below; at most ``big`` of them, default 256, else the row is outside the contract) are exact
factors; for every other token :math:`x_i = q_i t \le X` on the whole range, and

.. math::

    \prod_{i \text{ small}} (a_i + z b_i) = \exp\Bigl(-t\,q_{\rm small} + \sum_{j \ge 1}
    \frac{(-1)^{j+1} z^j}{j} \sum_k a_{jk} t^k M_k\Bigr) \bmod z^n,

:math:`(e^x - 1)^j = \sum_k a_{jk} x^k` (non-negative Stirling coefficients, truncated at degree
``K`` with remainder below :math:`10^{-15}` relative, :func:`.wor_fast._taylor_degree`) and
:math:`M_k = \sum_i q_i^k` *per group of tokens*: the cost per node and group is :math:`O(nK + n^2)`,
independent of the group's size. The exact factors enter as log-domain cumulative sums over the
``L`` big tokens (as in the JAX chain), so nothing overflows for any :math:`q_i t`.

**Groups and pruning.** Tokens sorted by ratio are cut into ``groups`` runs of equal length. The
chain value is computed at every group boundary; by the increasing-slopes lemma (the chain's
:math:`Q` is convex in the cumulative mass, ``docs/without_replacement.md`` section 6.2), inside
group :math:`b` every value is at least
:math:`\min\bigl(f(\text{start}), 1 + P_{\rm start} + r_{\rm first}\, q(\text{group}) -
Q_{\rm end}\bigr)`. The ``candidates`` groups with the smallest bound are cut again into
:data:`WOR_FAST_SUBRUNS` runs (their boundaries evaluated the same way, from the moments of
the tokens before them) and the ``candidates`` runs with the smallest bound are evaluated token by
token (exact factors from the run's start); the rest are certified by their bounds, and the
amount by which the best unevaluated bound undercuts the returned value (if any) is part of the
error.

**Range and error.** Nodes are the trapezoidal rule in :math:`s = \log t` on
:math:`[10^{-5}, T]` with a fixed node count: that of the range :math:`[10^{-5}, 2\cdot 10^4]` at the step
:func:`fast_step` (1/5 for ``n <= 8``, 1/8 above; a row with a shorter range gets a finer step,
a longer one a coarser step, which the estimate below sees). :math:`T` is the smallest point of a grid where
the right-tail bound :math:`\sum_{m=2}^{n-1} \Gamma(m+1, \rho_m T)/(m!\,\rho_m^{m+1})` of
:mod:`spectheory.solvers.wor` (:math:`\rho_m` the mass outside the top :math:`m` tokens; the
incomplete gamma bounded by :math:`(m+1)e^{-x}\max(1, x^m/m!)`, :func:`_tail`) is below
``1e-15`` (``1e-9`` in float32). Each row returns an ``error`` estimate: the tail bound, the
pruning gap, the Taylor remainder and rounding (:math:`n(\tau + 64\varepsilon) +
16\sqrt{V}\varepsilon`, the last term the prefix sums' estimate of the numpy path; in float32
the backend's measured contract, 1e-6) and the trapezoid estimate of :func:`_quad_est` (rules with
steps :math:`h, 2h, 4h`). It is an estimate (the quadrature part is not a proof), validated against
the numpy path on every benchmark family (``tests/test_jax_wor_fast.py``). Rows outside
the contract (no :math:`T \le` :data:`WOR_FAST_T_MAX` with a
small tail, or more than ``big`` tokens with :math:`q_i T > X`) get ``error = inf``; the API
gives them a second pass (:data:`WOR_FAST_RETRY`) and recomputes the rest with numpy.

Sampling without replacement: Khisti et al. (arXiv 2410.18234); the subset form and the prefix
property: Hu et al. (arXiv 2502.18779) and ``docs/without_replacement.md``. This evaluator is ours.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..wor_fast import _taylor_degree, _taylor_table
from .core import (
    WOR_T_HI,
    WOR_T_LO,
    _cumsum,
    _default_compensated,
    exclusive_sums,
    sort_by_ratio,
    wor_step,
)

__all__ = [
    "WOR_FAST_BIG",
    "WOR_FAST_CANDIDATES",
    "WOR_FAST_RETRY",
    "WOR_FAST_X",
    "WorFastOut",
    "alpha_wor_fast",
    "default_groups",
    "fast_step",
    "work_elements",
]

Array = Any

#: Largest :math:`q_i t` of a token handled by its moments (the rest are exact factors).
WOR_FAST_X: float = 0.5
#: Number of exact ("big") tokens: the largest entries of ``q``.
WOR_FAST_BIG: int = 256
#: Groups refined at the second level, and runs of the second level evaluated token by token
#: (4 and 8 took the same rows on every benchmark family at 32k, n = 4 and 16; 4 is 17% faster).
WOR_FAST_CANDIDATES: int = 4
#: Runs per candidate group at the second level.
WOR_FAST_SUBRUNS: int = 16
#: Right-tail tolerance of the range ``T`` (float64; float32 uses ``1e-9``).
WOR_FAST_TAIL: float = 1e-15
#: Rounding allowance of float32 rows (measured worst 1.3e-7 against float64 numpy on the same
#: float32 inputs, ``tests/test_jax_wor_fast.py``; the float32 contract of the JAX backend).
WOR_FAST_FLOAT32_ROUNDING: float = 1e-6
#: Largest integration range (rows needing more are outside the contract).
WOR_FAST_T_MAX: float = 1e12
#: Options of the API's second pass over the rows outside the default contract (peaked drafts:
#: ranges to 1e30 with the node count of [1e-5, 1e20] at step 1/8, 461 nodes, and 1024 exact
#: tokens: a near one-hot draft at V = 128k has ~600 entries above X / T; 1.2-2.2x the default
#: pass) before it falls back to numpy.
WOR_FAST_RETRY: dict[str, float] = {"step": 1.0 / 8.0, "t_ref": 1e20, "t_max": 1e30, "big": 1024}


def _t_grid(t_max: float) -> np.ndarray:
    """Candidate ranges ``T``: 8 per decade from 1 to ``t_max``."""
    return np.geomspace(1.0, t_max, 8 * max(1, math.ceil(math.log10(t_max))) + 1)


def fast_step(n: int) -> float:
    """Default trapezoid step in ``log t``: :func:`.core.wor_step` (1/5) for ``n <= 8`` and 1/8
    above (at 1/6 the three-rule estimate of :func:`_quad_est` reached 3.4e-11 on a layer-skip
    row at n = 16, V = 8192, while 1/8 brings it to the Taylor floor, 2.3e-13)."""
    return wor_step(n) if n <= 8 else 1.0 / 8.0


def default_groups(V: int, n: int) -> int:
    """Number of groups of the sorted chain for vocabulary ``V`` and ``n`` drafts (about
    :math:`\\sqrt{V}`, so boundary and token work balance; at most ``V``)."""
    return int(max(1, min(V, 2 ** round(math.log2(math.sqrt(V) * 0.75)))))


def work_elements(V: int, n: int, big: int = WOR_FAST_BIG, retry: bool = False) -> int:
    """Approximate peak number of array elements per row of :func:`alpha_wor_fast` (to size
    chunks): the big-token scan's stacked states, the ring polynomials at the two levels of
    boundaries (a few live copies each) and the row's own ``(V,)`` work arrays."""
    h = fast_step(n) if not retry else float(WOR_FAST_RETRY["step"])
    t_ref = WOR_T_HI if not retry else float(WOR_FAST_RETRY["t_ref"])
    big = big if not retry else int(WOR_FAST_RETRY["big"])
    J1 = math.ceil((math.log(t_ref) - math.log(WOR_T_LO)) / h) + 5
    G = default_groups(V, n)
    nb = (G + 1) + WOR_FAST_CANDIDATES * (WOR_FAST_SUBRUNS + 1)
    L = min(big, V)
    return int(2 * (L + 1) * n * J1 + 6 * n * J1 * nb + 16 * V)


class WorFastOut(NamedTuple):
    """Output of :func:`alpha_wor_fast`.

    Attributes
    ----------
    value
        :math:`\\alpha^*`, shape ``batch``.
    k
        :math:`|H^*|` (int32); :math:`H^*` is ``order[..., :k]``.
    order
        The ascending ratio permutation (int32), shape ``batch + (V,)``.
    error
        Estimated bound on the absolute error of ``value`` (``inf`` outside the contract).
    """

    value: Array
    k: Array
    order: Array
    error: Array


def _nodes(T: Array, n: int, step: float | None, t_ref: float) -> tuple[Array, Array]:
    """Trapezoid nodes in ``log t`` on ``[WOR_T_LO, T]`` per row: ``t`` ``(B, J + 1)`` and the
    weights of the rules with steps h, 2h, 4h ``(3, B, J + 1)`` (``J`` a multiple of 4)."""
    h0 = fast_step(n) if step is None else float(step)
    J = math.ceil((math.log(t_ref) - math.log(WOR_T_LO)) / h0)
    J += -J % 4
    s0 = math.log(WOR_T_LO)
    h = (jnp.log(T) - s0) / J  # (B,)
    j = jnp.arange(J + 1, dtype=T.dtype)
    t = jnp.exp(s0 + h[:, None] * j[None, :])
    end = (j == 0) | (j == J)
    w = h[:, None] * t * jnp.where(end, 0.5, 1.0)
    jj = jnp.arange(J + 1)
    w2 = jnp.where(jj % 2 == 0, 2.0 * w, 0.0)
    w4 = jnp.where(jj % 4 == 0, 4.0 * w, 0.0)
    return t, jnp.stack([w, w2, w4])


def _tail(rho: Array, T: Array, n: int) -> Array:
    r"""Right-tail bound :math:`\sum_{m=2}^{n-1} \Gamma(m+1, \rho_m T)/(m!\,\rho_m^{m+1})` of
    :mod:`spectheory.solvers.wor`, with :math:`\Gamma(m+1, x)/m! = e^{-x}\sum_{j \le m} x^j/j!
    \le (m + 1)\,e^{-x}\max(1, x^m/m!)`, evaluated in logarithms (no underflow of
    :math:`\rho^{m+1}` and the same in float32). ``rho`` ``(B, n - 1)`` with ``rho[:, m - 1]`` =
    :math:`\rho_m`; ``T`` ``(B, ...)``."""
    out = jnp.zeros(T.shape, T.dtype)
    for m in range(2, n):
        r = rho[:, m - 1].reshape((-1,) + (1,) * (T.ndim - 1))
        x = r * T
        lg = (
            -x
            + math.log(m + 1.0)
            + jnp.maximum(0.0, m * jnp.log(x) - math.lgamma(m + 1.0))
            - (m + 1) * jnp.log(r)
        )
        out = out + jnp.exp(jnp.minimum(lg, 80.0))
    return out


def _big_prefix(qbig: Array, cnt: Array, t: Array, n: int) -> Array:
    r"""Ring-form coefficients :math:`[z^m]\prod (a_i + z b_i)` over the first ``cnt`` big tokens
    (chain order), ``m = 0..n-1``: shape ``(n, B, J1, NB)`` for ``cnt`` ``(B, NB)``.

    The recurrence :math:`W_m \leftarrow a_i W_m + b_i W_{m-1}` adds non-negative terms of
    coefficients in :math:`[0, 1]`: no overflow, no cancellation, no underflow that matters (an
    underflowing coefficient is below the smallest normal number *absolutely*). The log-domain
    cumulative sums of the JAX chain (``core._wor_quad``) do not have this property: a prefix
    :math:`e_{m-1}` that underflows relative to its row's largest term can later be multiplied by
    a huge :math:`c_i = e^{q_i t} - 1` (measured: 4.7e-4 error on a softmax row at temperature 0.5,
    ``tests/test_jax_wor_fast.py``).
    """
    B, _L = qbig.shape
    J1 = t.shape[1]
    W0 = jnp.zeros((n, B, J1), t.dtype).at[0].set(1.0)

    def step(W: Array, qi: Array) -> tuple[Array, Array]:
        xt = t * qi[:, None]
        a = jnp.exp(-xt)
        b = -jnp.expm1(-xt)
        Wn = jnp.stack([a * W[0]] + [a * W[m] + b * W[m - 1] for m in range(1, n)])
        return Wn, Wn

    _, Ws = lax.scan(step, W0, qbig.T)  # (L, n, B, J1)
    Ws = jnp.concatenate([W0[None], Ws], axis=0)  # (L + 1, n, B, J1)
    Ws = jnp.transpose(Ws, (2, 0, 1, 3))  # (B, L + 1, n, J1)
    out = jnp.take_along_axis(Ws, cnt[:, :, None, None], axis=1)  # (B, NB, n, J1)
    return jnp.transpose(out, (2, 0, 3, 1))


def _small_poly(CM: Array, Ssm: Array, x: Array, t: Array, n: int, K: int) -> Array:
    r"""Ring-form coefficients (``m = 0..n-1``) of the small tokens of each prefix from their scaled
    moments: ``CM`` ``(B, NB, K)`` (:math:`\sum (q_i/q_{\max})^k`), ``Ssm`` ``(B, NB)`` (their mass),
    ``x`` ``(B, J1)`` = :math:`q_{\max} t`, ``t`` ``(B, J1)``. Returns ``(n, B, J1, NB)``."""
    A = _taylor_table(max(n, 2))[:n, 1 : K + 1]  # (n, K): a_{jk}/j for k = 1..K
    sgn = np.array([(-1.0) ** (j + 1) for j in range(n)])
    coef = jnp.asarray(A * sgn[:, None], t.dtype)  # (n, K)
    # ell_j / sigma^j with sigma = ell_1 (the mean number of small tokens rung), computed as
    # (x / sigma)^j * sum_{k >= j} A_jk x^(k - j) CM_k: no underflow of sigma^j in float32.
    kk = np.arange(1, K + 1)
    expo = np.maximum(kk[None, :] - np.arange(n)[:, None], 0)  # (n, K): k - j
    xs = x[..., None, None] ** jnp.asarray(expo, t.dtype)  # (B, J1, n, K)
    Sj = jnp.einsum("bgk,bijk,jk->jbig", CM, xs, coef)  # (n, B, J1, NB); Sj[1] = ell_1 / x
    l1 = x[..., None] * Sj[1]
    sig = jnp.where(l1 > 0, l1, 1.0)
    # A prefix whose small tokens are all tiny against the largest small token (scaled first
    # moment below `thr`) has at most X * thr = 5e-21 expected rings from them: its small part is
    # 1 to that accuracy (float64), and 1 / Sj[1] would overflow in ratio^j. In float32 such
    # prefixes may overflow to inf/nan: the row is then flagged (error inf), never wrong.
    thr = 1e-20 if jnp.dtype(t.dtype) == jnp.dtype(jnp.float64) else 0.0
    live = Sj[1] > thr
    ratio = jnp.where(live & (l1 > 0), 1.0 / jnp.where(live, Sj[1], 1.0), 0.0)  # x / sigma
    lt = [None] + [(Sj[j] * ratio) * ratio ** (j - 1) for j in range(1, n)]
    E = [jnp.ones_like(l1)]
    for m in range(1, n):
        acc = jnp.zeros_like(l1)
        for j in range(1, m + 1):
            acc = acc + j * lt[j] * E[m - j]
        E.append(acc / m)
    l0 = -t[:, :, None] * Ssm[:, None, :]
    logs = jnp.log(sig)
    cap = 0.9 * math.log(float(jnp.finfo(t.dtype).max))
    out = [jnp.exp(l0)]
    for m in range(1, n):
        out.append(jnp.exp(jnp.minimum(l0 + m * logs, cap)) * E[m])
    return jnp.stack(out)


def _power_sums(u: Array, K: int) -> Array:
    """``out[..., k - 1] = sum(u ** k, axis=-1)`` for ``k = 1..K`` (repeated products)."""
    out = []
    uk = u
    for _k in range(K):
        out.append(jnp.sum(uk, axis=-1))
        uk = uk * u
    return jnp.stack(out, axis=-1)


def _quad_est(I3: Array) -> Array:
    r"""Error estimate of the finest of three trapezoid rules (steps :math:`h, 2h, 4h`; ``I3`` has
    them on its first axis): with :math:`\Delta = |I_h - I_{2h}|`, :math:`\Delta' = |I_{2h} -
    I_{4h}|`, the larger of :math:`\Delta^2/I` (the squared-change rule of
    :func:`.wor_fast._quad_error`, valid once the rule converges exponentially) and
    :math:`\Delta \cdot \Delta/\Delta'` (geometric extrapolation of the last two changes,
    which does not assume it); :math:`\Delta` itself unless :math:`\Delta \le 10^{-4} I`."""
    tiny = jnp.finfo(I3.dtype).tiny
    d = jnp.abs(I3[0] - I3[1])
    d2 = jnp.maximum(jnp.abs(I3[1] - I3[2]), tiny)
    v = jnp.maximum(jnp.abs(I3[0]), tiny)
    est = jnp.maximum(d * d / v, d * jnp.minimum(d / d2, 1.0))
    return jnp.where(d <= 1e-4 * v, est, d)


def _mul_trunc(A: Array, Bp: Array, n: int) -> Array:
    """Product of two coefficient stacks ``(n, ...)`` modulo ``z^n``."""
    out = []
    for m in range(n):
        acc = A[0] * Bp[m]
        for a in range(1, m + 1):
            acc = acc + A[a] * Bp[m - a]
        out.append(acc)
    return jnp.stack(out)


@partial(
    jax.jit,
    static_argnames=("n", "compensated", "groups", "candidates", "big", "step", "t_ref", "t_max"),
)
def alpha_wor_fast(
    p: Array,
    q: Array,
    n: int,
    compensated: bool | None = None,
    groups: int | None = None,
    candidates: int = WOR_FAST_CANDIDATES,
    big: int = WOR_FAST_BIG,
    step: float | None = None,
    t_ref: float = WOR_T_HI,
    t_max: float = WOR_FAST_T_MAX,
) -> WorFastOut:
    r""":math:`\alpha^*` for ``n >= 3`` drafts sampled without replacement (module docstring).

    Parameters
    ----------
    p, q
        Target and draft laws, last axis the vocabulary, any leading batch axes, float64 (inside
        an x64 context) or float32.
    n
        Number of drafts (static, at least 3).
    compensated
        Compensated prefix sums (default: on for float32).
    groups, candidates, big, step
        Static tuning: number of groups of the sorted chain (default :func:`default_groups`),
        groups evaluated token by token, exact tokens, largest trapezoid step in ``log t``
        (default :func:`fast_step`).
    t_ref, t_max
        Static: the node count is that of ``[1e-5, t_ref]`` at ``step``; ranges up to ``t_max``
        are accepted (the API retries rows outside the default contract with
        :data:`WOR_FAST_RETRY`: peaked drafts need ranges of :math:`10^{13}` and more).

    Returns
    -------
    WorFastOut
        ``(value, k, order, error)``.
    """
    if n < 3:
        raise ValueError(f"argument 'n': alpha_wor_fast needs n >= 3, got {n}")
    lead = p.shape[:-1]
    V = p.shape[-1]
    dt = p.dtype
    p2 = p.reshape(-1, V)
    q2 = q.reshape(-1, V).astype(dt)
    Bn = p2.shape[0]
    comp = _default_compensated(p2, compensated)
    f64 = jnp.dtype(dt) == jnp.dtype(jnp.float64)
    eps = float(jnp.finfo(dt).eps)
    G = default_groups(V, n) if groups is None else int(groups)
    g = -(-V // G)
    Vp = G * g
    C = int(min(candidates, G))
    L = int(max(1, min(big, V)))  # V <= big: every token is exact
    K, tau = _taylor_degree(WOR_FAST_X, max(n, 3))

    ps, qs, order = sort_by_ratio(p2, q2)
    pad = ((0, 0), (0, Vp - V))
    ps = jnp.pad(ps, pad)
    qs = jnp.pad(qs, pad)

    # --- exact (big) tokens and the range
    # the n - 1 largest entries of q by argmax passes (no sort: XLA's top_k sorts the whole row
    # on the CPU whatever k, 25 ms for 4 x 32k); rho_m = mass outside the top m tokens,
    # m = 1..n-1, as sums of non-negative terms (1 - sum(top) cancels on near one-hot drafts)
    iota = lax.broadcasted_iota(jnp.int32, q2.shape, 1)
    D = jnp.zeros(q2.shape, dtype=bool)
    tops_l = []
    for _ in range(n - 1):
        qm = jnp.where(D, -jnp.inf, q2)
        a = jnp.argmax(qm, axis=-1).astype(jnp.int32)
        tops_l.append(jnp.max(qm, axis=-1))
        D = D | (iota == a[:, None])
    tops = jnp.stack(tops_l, axis=-1)  # (B, n - 1), descending
    rho_last = jnp.sum(jnp.where(D, 0.0, q2), axis=-1)
    rc = jnp.flip(jnp.cumsum(jnp.flip(tops, -1), axis=-1), -1)  # sum_{j >= i} tops_j
    after = jnp.concatenate([rc[:, 1:], jnp.zeros_like(rc[:, :1])], axis=-1)  # sum_{j > m - 1}
    rho = jnp.maximum(rho_last[:, None] + after, jnp.finfo(dt).tiny)  # (B, n - 1)
    Tg = jnp.asarray(_t_grid(t_max), dt)
    tails = _tail(rho, jnp.broadcast_to(Tg, (Bn, Tg.size)), n)  # (B, grid)
    tol = WOR_FAST_TAIL if f64 else 1e-9
    okT = tails <= tol
    ti = jnp.where(jnp.any(okT, axis=-1), jnp.argmax(okT, axis=-1), Tg.size - 1)
    T = Tg[ti]
    tail_err = jnp.take_along_axis(tails, ti[:, None], axis=-1)[:, 0]
    # exact ("big") tokens: q > X / T (all positive ones when V <= big); the rest have q T <= X
    theta = jnp.zeros((Bn,), dt) if V <= L else WOR_FAST_X / T
    nbig = jnp.sum(q2 > theta[:, None], axis=-1)
    qmax_small = jnp.max(jnp.where(q2 > theta[:, None], 0.0, q2), axis=-1)
    inside = (tail_err <= tol) & (nbig <= L)

    isbig = qs > qmax_small[:, None]
    isbig = isbig & (jnp.arange(Vp) < V)[None, :]
    pos = jax.vmap(lambda f: jnp.nonzero(f, size=L, fill_value=Vp)[0])(isbig)  # (B, L)
    qbig = jnp.take_along_axis(jnp.pad(qs, ((0, 0), (0, 1))), pos, axis=-1)

    # --- prefix sums at every token (index k = prefix of the first k tokens, k = 0..Vp)
    def pre(x: Array) -> Array:
        return jnp.pad(_cumsum(x, comp), ((0, 0), (1, 0)))

    P0 = pre(ps)
    S0 = pre(qs)
    suf = jnp.flip(_cumsum(jnp.flip(qs, -1), comp), -1)
    lam0 = jnp.pad(suf, ((0, 0), (0, 1)))  # mass after the first k tokens
    rest = exclusive_sums(qs, comp)
    a1 = jnp.where(qs > 0, qs / jnp.where(qs > 0, rest, 1.0), 0.0)
    G10 = pre(a1)
    qsm = jnp.where(isbig, 0.0, qs)
    Ssm0 = pre(qsm)

    # --- moments of the small tokens per group (token index b * g starts group b)
    scale = jnp.where(qmax_small > 0, qmax_small, 1.0)
    u = (qsm / scale[:, None]).reshape(Bn, G, g)
    Mg = _power_sums(u, K)  # (B, G, K)
    CMb = jnp.pad(jnp.cumsum(Mg, axis=1), ((0, 0), (1, 0), (0, 0)))  # (B, G + 1, K)

    t, w3 = _nodes(T, n, step, t_ref)
    x = qmax_small[:, None] * t

    def at(kb: Array, CM: Array) -> tuple[Array, ...]:
        """Chain values at the prefixes of lengths ``kb`` ``(B, NB)`` whose small-token moments
        are ``CM`` ``(B, NB, K)``: ``f, P, S, Q``, the ring polynomial ``(n, B, J1, NB)`` and the
        quadrature estimate."""
        Pv, Sv, lv, G1v, Ssv = (jnp.take_along_axis(x_, kb, axis=-1) for x_ in (P0, S0, lam0, G10, Ssm0))
        cnt = jax.vmap(lambda ps_, kb_: jnp.searchsorted(ps_, kb_, side="left"))(pos, kb)
        W = _mul_trunc(_small_poly(CM, Ssv, x, t, n, K), _big_prefix(qbig, cnt, t, n), n)
        dens = jnp.exp(-t[:, :, None] * lv[:, None, :]) * jnp.sum(W[2:], axis=0)
        I3 = jnp.einsum("rbj,bjk->rbk", w3, dens)
        Qv = jnp.clip(Sv - lv * (G1v + I3[0]), 0.0, 1.0)
        return 1.0 + Pv - Qv, Pv, Sv, Qv, W, _quad_est(lv[None] * I3)

    qs_pad = jnp.pad(qs, ((0, 0), (0, 1)))
    ps_pad = jnp.pad(ps, ((0, 0), (0, 1)))

    def lower(start: Array, fv: Array, Pv: Array, Sv: Array, Qv: Array) -> Array:
        """Lower bound on the chain inside each run between consecutive boundaries (last axis),
        by the increasing-slopes lemma; ``start`` = first token of each run."""
        idx = start.reshape(Bn, -1)
        rq = jnp.take_along_axis(qs_pad, idx, axis=-1).reshape(start.shape)
        rp = jnp.take_along_axis(ps_pad, idx, axis=-1).reshape(start.shape)
        r_first = jnp.where(rq > 0, rp / jnp.where(rq > 0, rq, 1.0), 0.0)
        dS = Sv[..., 1:] - Sv[..., :-1]
        lin = 1.0 + Pv[..., :-1] - Qv[..., 1:] + jnp.where(dS > 0, r_first * dS, 0.0)
        return jnp.minimum(jnp.minimum(fv[..., :-1], fv[..., 1:]), lin)

    def pick(LB: Array, c: int) -> tuple[Array, Array]:
        """The ``c`` runs with the smallest bound and the next smallest bound (inf if none)."""
        m = LB.shape[-1]
        negLB, idx = lax.top_k(-LB, min(c + 1, m))
        nxt = -negLB[:, c] if m > c else jnp.full((Bn,), jnp.inf, dt)
        return idx[:, :c], nxt

    # --- level 1: group boundaries
    kb1 = jnp.broadcast_to(jnp.arange(G + 1) * g, (Bn, G + 1))
    f1, P1, S1, Q1, _, quad1 = at(kb1, CMb)
    LB1 = lower(kb1[:, :-1], f1, P1, S1, Q1)  # (B, G)
    cand1, next1 = pick(LB1, C)  # (B, C)

    # --- level 2: S2 runs of g2 tokens inside each candidate group
    S2 = min(WOR_FAST_SUBRUNS, g)
    g2 = -(-g // S2)
    S2 = -(-g // g2)
    gp = S2 * g2
    tok1 = cand1[:, :, None] * g + jnp.arange(gp)[None, None, :]  # (B, C, gp)
    inb = jnp.arange(gp) < g
    tokc = jnp.where(inb, tok1, Vp)  # beyond the group: the zero pad
    qsm_p = jnp.pad(qsm, ((0, 0), (0, 1)))
    uc = (jnp.take_along_axis(qsm_p, tokc.reshape(Bn, -1), axis=-1) / scale[:, None]).reshape(Bn, C, S2, g2)
    M2 = _power_sums(uc, K)  # (B, C, S2, K)
    CM2 = jnp.take_along_axis(CMb, cand1[:, :, None], axis=1)[:, :, None, :] + jnp.pad(
        jnp.cumsum(M2, axis=2), ((0, 0), (0, 0), (1, 0), (0, 0))
    )  # (B, C, S2 + 1, K)
    kb2 = jnp.minimum(cand1[:, :, None] * g + jnp.arange(S2 + 1) * g2, (cand1[:, :, None] + 1) * g)
    f2, P2, S2v, Q2, W2, quad2 = at(kb2.reshape(Bn, -1), CM2.reshape(Bn, -1, K))
    shp = (Bn, C, S2 + 1)
    LB2 = lower(
        kb2[:, :, :-1], f2.reshape(shp), P2.reshape(shp), S2v.reshape(shp), Q2.reshape(shp)
    )  # (B, C, S2); runs past a group's end are empty (bound = their start value)
    cand2, next2 = pick(LB2.reshape(Bn, -1), C)  # flat run index c * S2 + s
    start2 = (cand2 // S2) * (S2 + 1) + cand2 % S2  # its start among the level-2 boundaries
    Wc = jnp.take_along_axis(W2, start2[None, :, None, :], axis=-1)  # (n, B, J1, C)
    kstart = jnp.take_along_axis(kb2.reshape(Bn, -1), start2, axis=-1)
    kend = jnp.take_along_axis(kb2.reshape(Bn, -1), start2 + 1, axis=-1)

    # --- candidate runs token by token
    tok = kstart[:, :, None] + jnp.arange(g2)[None, None, :]  # (B, C, g2)
    tok = jnp.where(tok < kend[:, :, None], tok, Vp)  # past the run: the zero pad, same prefix
    flat = tok.reshape(Bn, -1)
    qt_ = jnp.take_along_axis(jnp.pad(qs, ((0, 0), (0, 1))), flat, axis=-1).reshape(Bn, C, g2)
    kk = jnp.minimum(flat + 1, jnp.repeat(kend, g2, axis=-1))  # prefix length after each token
    Pk, Sk, lamk, G1k = (
        jnp.take_along_axis(x_, kk, axis=-1).reshape(Bn, C, g2) for x_ in (P0, S0, lam0, G10)
    )

    def step(Wst: Array, i: Array) -> tuple[Array, Array]:
        qi = lax.dynamic_index_in_dim(qt_, i, axis=2, keepdims=False)  # (B, C)
        li = lax.dynamic_index_in_dim(lamk, i, axis=2, keepdims=False)
        xt = t[:, :, None] * qi[:, None, :]  # (B, J1, C)
        a = jnp.exp(-xt)
        b = -jnp.expm1(-xt)
        new = [a * Wst[0]] + [a * Wst[m] + b * Wst[m - 1] for m in range(1, n)]
        Wn = jnp.stack(new)
        dens = jnp.exp(-t[:, :, None] * li[:, None, :]) * jnp.sum(Wn[2:], axis=0)
        return Wn, jnp.einsum("rbj,bjc->rbc", w3, dens)

    _, I3k = lax.scan(step, Wc, jnp.arange(g2))  # (g2, 3, B, C)
    I3k = jnp.moveaxis(I3k, 0, -1)  # (3, B, C, g2)
    Qk = jnp.clip(Sk - lamk * (G1k + I3k[0]), 0.0, 1.0)
    fk = 1.0 + Pk - Qk  # (B, C, g2)
    quad_k = _quad_est(lamk[None] * I3k)
    LB_next = jnp.minimum(next1, next2)

    # --- minimum (smallest k on ties), error
    vals = jnp.concatenate([f1, f2, fk.reshape(Bn, -1)], axis=-1)
    ks = jnp.concatenate([kb1, kb2.reshape(Bn, -1), kk], axis=-1)
    vmin = jnp.min(vals, axis=-1)
    kbest = jnp.min(jnp.where(vals == vmin[:, None], ks, Vp + 1), axis=-1)
    one = jnp.ones_like(vmin)
    value = jnp.minimum(vmin, one)
    k = jnp.where(vmin < one, jnp.minimum(kbest, V), 0).astype(jnp.int32)
    prune = jnp.maximum(value - LB_next, 0.0)
    quad = jnp.maximum(
        jnp.maximum(jnp.max(quad1, axis=-1), jnp.max(quad2, axis=-1)),
        jnp.max(quad_k.reshape(Bn, -1), axis=-1),
    )
    # Taylor remainder and rounding: n (tau + 64 eps) as the numpy fast path (float64); in
    # float32 the rounding of the chain dominates and the measured contract is used instead.
    # plus the prefix sums P, S, lambda, G_1 over up to V terms: 16 sqrt(V) eps, the numpy path's
    # summation estimate (a full-vocabulary row at V = 128k: 1.5e-13 between the two paths)
    rounding = (
        n * (tau + 64.0 * eps) + 16.0 * math.sqrt(V) * eps if f64 else WOR_FAST_FLOAT32_ROUNDING
    )
    error = tail_err + prune + quad + rounding
    error = jnp.where(inside & jnp.isfinite(value), error, jnp.inf)
    return WorFastOut(value.reshape(lead), k.reshape(lead), order.reshape((*lead, V)), error.reshape(lead))
