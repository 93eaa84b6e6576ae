r"""Fast exact :math:`\alpha^*` for sampling without replacement: bucket the ratio chain, aggregate.

The prefix theorem for sampling without replacement (``docs/without_replacement.md`` section 6)
gives :math:`\alpha^* = \min_k f(k)`, :math:`f(k) = 1 + P_k - Q(H_k^n)` along the chain sorted by
:math:`p/q`. :func:`spectheory.solvers.wor.wor_chain` (the reference) evaluates :math:`Q(H_k^n)` at
*every* prefix: :math:`O(nVN)` for :math:`N` quadrature nodes. This module returns the same
minimum and witness from far less work (proofs in ``docs/without_replacement.md`` section 7):

1. **Buckets** (as :mod:`.fastprefix`): a monotone float32 key of the ratio groups tokens; bucket
   boundaries are points of the exact chain.
2. **Boundary values.** :math:`Q(H^n) = q(H) - \lambda_H \sum_{m=1}^{n-1} G_m(H)` with
   :math:`G_1 = \sum_{i\in H} q_i/(1-q_i)` (per-bucket sums; this is all of it for :math:`n = 2`)
   and, for :math:`m \ge 2`, :math:`G_m = \int_0^\infty e^{-t} e_m(c(t))\,dt`,
   :math:`c_i = e^{q_it}-1`. At a quadrature node the generating polynomial
   :math:`\prod_{i\in H}(1+zc_i)` (mod :math:`z^n`) is the product of an exact part (tokens with
   :math:`q_i T > X_2`, few) and :math:`\exp\bigl(\sum_j (-1)^{j+1} z^j P_j/j\bigr)` for the
   small tokens, whose power sums :math:`P_j = \sum_i (e^{q_it}-1)^j = \sum_k a_{jk} t^k M_k`
   come from per-bucket moments :math:`M_k = \sum_i q_i^k` (truncated Taylor series with a proved
   remainder bound). The cost per node is :math:`O(\text{buckets}\cdot n (K + n))`, not
   :math:`O(nV)`. Nodes: trapezoid rule in :math:`u`, :math:`t = \log(1 + e^{u - e^{-u}})^2`
   (35-57 nodes for :math:`n \le 16`, the reference uses 120-260).
   For ``n = 3`` the quadrature is replaced by an exact closed form: :math:`G_2` is a sum of
   pair terms :math:`f(q_i, q_j)`, evaluated through the same moments (section 7.7). For
   ``n = 4`` an exact closed form of :math:`G_3` (triple sums, section 7.9) exists behind
   ``WOR_FAST_CLOSED4``; it is off by default because it measured slower than the quadrature.
   Boundaries are refined progressively: the first rule brackets all of them and only those that
   can still matter get the finer rules (section 7.4).
3. **Pruning.** By the increasing-slopes lemma (section 6.2), :math:`Q` along the chain is convex
   in the cumulative mass, so inside bucket :math:`j`,
   :math:`f \ge \min(f(\text{start}), 1 + P_{<j} + \ell_j q_j - Q_{\le j})` exactly as for
   i.i.d. drafts; only buckets whose bound can beat the best boundary are evaluated token by token
   (exactly, on the same nodes). Large candidate buckets are first split by a finer key and
   pruned again the same way (a second level of boundaries).

Errors (quadrature, tails, Taylor truncation, rounding) are bounded or estimated and reported;
when the fast path cannot vouch for its accuracy (peaked ``q`` that needs deflation, a huge
integration range) it returns ``None`` and the caller uses the reference evaluator. Sampling
without replacement is studied by Khisti et al. (arXiv 2410.18234) and Hu et al. (arXiv
2502.18779); this evaluator is ours.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from .fastprefix import _bucket_lower
from .wor import WOR_RHO_MIN, WOR_T_LO, WOR_TAIL_TOL

__all__ = [
    "WOR_FAST_MIN_V",
    "WorFast",
    "wor_fast_mantissa_bits",
    "wor_prefix_fast",
]

#: Below this vocabulary size the reference chain (:func:`.wor.wor_chain`) is used.
WOR_FAST_MIN_V: int = 2048
#: Largest :math:`x = q_i t` (over all nodes) of the first moment tier (Taylor degree 5).
WOR_TIER1_X: float = 1e-3
#: Largest :math:`x = q_i t` of the second moment tier (Taylor degree 11-16); larger tokens are
#: multiplied in exactly.
WOR_TIER2_X: float = 1e-1
#: Bound on the relative Taylor remainder of each tier (relative to :math:`\sum_i q_i t`). The
#: error bound adds :math:`n(\tau + 64\varepsilon)` times the majorant, so a :math:`\tau` below
#: :math:`64\varepsilon \approx 1.4\cdot10^{-14}` barely changes it; :math:`10^{-15}` saves one
#: moment pass over the vocabulary (tier 1: degree 5, not 6) and 2-4 in tier 2.
WOR_TAYLOR_TOL: float = 1e-15
#: Accept the trapezoid rule once the estimated discretisation error of every boundary integral
#: (:func:`_quad_error`) is below this (absolute).
WOR_FAST_CHANGE: float = 1e-11
#: The squared-change estimate is used only once the change is this small relative to the
#: integral (a sign that the rule is in its exponentially convergent regime).
WOR_FAST_ASYMPTOTIC: float = 1e-4
#: Initial trapezoid step in the variable ``u`` of :func:`_t_jac`.
WOR_FAST_STEP: float = 1.0
#: Smallest trapezoid step in ``u`` (refinement stops there; the estimate is still checked).
WOR_FAST_MIN_STEP: float = 0.03
#: Largest integration range handled in plain floating point (beyond it: reference evaluator).
WOR_FAST_T_MAX: float = 600.0
#: Peaked drafts (mass outside the top ``n - 1`` tokens below ``WOR_RHO_MIN``, or an integration
#: range beyond ``WOR_FAST_T_MAX``) use the *ring form* (docs section 7.10): nodes equispaced in
#: :math:`\log t` up to this range (beyond it: reference evaluator) ...
WOR_FAST_RING_T_MAX: float = 1e250
#: ... and at most this many exactly multiplied tokens (a sequential recurrence over them).
#: Ring form: candidate buckets must be able to beat the best boundary by more than this (it is
#: added to the error bound: the value is then within it of the minimum).
WOR_FAST_RING_SLACK: float = 5e-12
WOR_FAST_RING_MAX_BIG: int = 4096
#: Ring form: largest :math:`q(\text{run})\,T` of a candidate run (its tokens' polynomial is
#: formed in the plain form; beyond it: reference evaluator).
WOR_FAST_RING_RUN_X: float = 600.0
#: Rows with more candidate tokens than this (and V / 8) drop the candidate buckets that cannot
#: beat the best boundary by more than ``WOR_FAST_LEVEL_SLACK`` (added to the error bound).
WOR_FAST_LEVEL_MIN: int = 4096
#: ... or more candidate buckets than this (each is a round of numpy calls).
WOR_FAST_LEVEL_RUNS: int = 32
WOR_FAST_LEVEL_SLACK: float = 1e-13
#: Rows (V at least WOR_FAST_ADAPT_MIN_V, n >= 3) whose ratios occupy fewer than
#: ``WOR_FAST_ADAPT_MIN_OCC`` buckets are re-keyed with ``WOR_FAST_ADAPT_BUCKETS`` buckets spread
#: over the occupied range of float32 ratio patterns.
WOR_FAST_ADAPT_MIN_V: int = 8192
WOR_FAST_ADAPT_MIN_OCC: int = 24
WOR_FAST_ADAPT_BUCKETS: int = 256
#: Largest number of exactly-multiplied ("big") tokens (beyond it: reference evaluator).
WOR_FAST_MAX_BIG: int = 20000
#: Candidate buckets with at least this many tokens are split by a finer key first (n >= 3).
WOR_FAST_SUB_MIN: int = 256
#: Extra float32 mantissa bits of the second-level key.
WOR_FAST_SUB_BITS: int = 3
#: Levels of finer keys below the first (each ``WOR_FAST_SUB_BITS`` bits finer); level 1 is the
#: second level of section 7.3, deeper levels split its surviving runs again. Deeper levels cut
#: the tokens evaluated one by one up to 16x on the benchmark's instances but not the time (the runs'
#: boundary polynomials cost as much as the tokens they save; measured under load), so off.
WOR_FAST_SUB_LEVELS: int = 1
#: Candidate runs with at least this many tokens and at most a quarter as many distinct ratios
#: are split into their tie groups, evaluated only at the groups' ends (the chain value is concave
#: inside a tie group).
WOR_FAST_TIE_MIN: int = 64
#: Surviving runs with at least this many tokens are split again (levels below the second).
WOR_FAST_SUB_MIN_DEEP: int = 64
#: ``n = 3``: evaluate :math:`G_2` in closed form (pair sums through moments, section 7.7)
#: instead of by quadrature.
WOR_FAST_CLOSED3: bool = True
#: Largest number of big tokens for the closed form (their pairs are summed explicitly).
WOR_FAST_CLOSED3_MAX_BIG: int = 2048
#: ``n = 4``: evaluate :math:`G_2` and :math:`G_3` at the boundaries in closed form (pair and
#: triple sums through moments, section 7.9) instead of by quadrature; the candidate tokens keep
#: the quadrature, on the candidate buckets' base boundaries only.
WOR_FAST_CLOSED4: bool = False
#: Largest number of tokens above ``WOR_FAST_CLOSED4_BIG`` for the ``n = 4`` closed form (their
#: triples are summed explicitly, an ``E^3`` array); beyond it the quadrature path is used.
WOR_FAST_CLOSED4_MAX_BIG: int = 48
#: ``n = 4`` closed form: tokens with :math:`q_i <` this (and above the quadrature's second tier)
#: join the second moment tier (degree 12 at ``n = 4``); only the larger ones (at most 200, usually
#: a few dozen) are summed explicitly. With :math:`u = 0.005` all truncation bounds of section
#: 7.9 stay below :math:`10^{-17}`.
WOR_FAST_CLOSED4_BIG: float = 0.005
#: Degree of that tier when the quadrature has no second tier.
WOR_FAST_CLOSED4_KMED: int = 12
#: First-tier Taylor degree when the ``n = 4`` closed form is used: its small-triple truncation
#: bound :math:`4.5(3u)^{K-2}/(1-3u)` needs :math:`K \ge 6` to be below :math:`10^{-16}`.
WOR_FAST_CLOSED4_K1: int = 6
#: Tokens per chunk of the first sweep (keys, p masses, first-tier moments; cache-sized).
WOR_FAST_CHUNK: int = 32768
#: Largest error bound the fast path returns; above it the caller uses the reference evaluator.
WOR_FAST_MAX_ERROR: float = 1e-11
_KMAX: int = 64
_EPS: float = float(np.finfo(np.float64).eps)


def wor_fast_mantissa_bits(V: int, n: int) -> int:
    """Float32 mantissa bits of the bucket key for vocabulary ``V`` and ``n`` drafts.

    A boundary costs :math:`O(n^2 + nK)` per node, a candidate token :math:`O(n)`: fewer, wider
    buckets for larger ``n`` (tuned on the benchmark's instances at V = 32k-256k, under load).
    """
    bl = int(V).bit_length()
    if n >= 12:
        return int(min(3, max(2, bl - 16)))
    if n >= 4:
        return int(min(4, max(3, bl - 12)))  # third round: 4 bits from V = 32k (was 3 below 256k)
    return int(min(6, max(2, bl - 12)))


@functools.lru_cache(maxsize=8)
def _taylor_table(nmax: int) -> np.ndarray:
    r""":math:`A[j, k] = a_{jk}/j` with :math:`(e^x-1)^j = \sum_k a_{jk} x^k`, ``j < nmax``.

    :math:`a_{jk} = j!\,S(k, j)/k! \ge 0` (Stirling numbers of the second kind), computed by
    repeated convolution of the series of :math:`e^x - 1` (positive terms only).
    """
    e1 = np.array([0.0] + [1.0 / math.factorial(k) for k in range(1, _KMAX + 1)])
    A = np.zeros((nmax, _KMAX + 1))
    cur = np.zeros(_KMAX + 1)
    cur[0] = 1.0
    for j in range(1, nmax):
        cur = np.convolve(cur, e1)[: _KMAX + 1]
        A[j] = cur / j
    A.flags.writeable = False
    return A


@functools.lru_cache(maxsize=64)
def _taylor_degree(X: float, n: int) -> tuple[int, float]:
    r"""Smallest ``K`` with :math:`\max_{j<n} \sum_{k>K} A_{jk} X^{k-1} \le` ``WOR_TAYLOR_TOL``.

    For a token with :math:`x = q_i t \le X`, the remainder of :math:`(e^x-1)^j/j` after degree
    ``K`` is :math:`\sum_{k>K} A_{jk} x^k \le (x/X)^{K+1}\sum_{k>K} A_{jk}X^k \le x\,\tau`
    (coefficients are non-negative), with :math:`\tau` the returned second value.
    """
    A = _taylor_table(max(n, 2))
    powers = X ** np.arange(_KMAX + 1, dtype=np.float64)
    for K in range(1, _KMAX - 8):
        tau = max(float(np.sum(A[j, K + 1 :] * powers[K + 1 :])) / X for j in range(1, n))
        if tau <= WOR_TAYLOR_TOL:
            return K, tau
    return _KMAX - 8, tau


@dataclass
class WorFast:
    """Result of :func:`wor_prefix_fast` for one row.

    Attributes
    ----------
    value
        :math:`\\alpha^*` (the smallest chain value, or 1 for the empty set).
    mask
        ``(V,)`` witness: a prefix of the stable ratio order (the reference's witness semantics).
    error
        Bound on the absolute error of ``value`` (of the evaluated :math:`Q` values).
    info
        Diagnostics: ``buckets``, ``candidate_tokens``, ``big_tokens``, ``quad_nodes``.
    """

    value: float
    mask: np.ndarray
    error: float
    info: dict[str, float] = field(default_factory=dict)


def _suffix_after(x: np.ndarray) -> np.ndarray:
    """``out[i] = sum(x[i+1:])`` (reversed cumulative sum, no subtraction)."""
    out = np.empty_like(x)
    if x.size:
        out[:-1] = np.flip(np.cumsum(np.flip(x[1:])))
        out[-1] = 0.0
    return out


def _poly_cum(c: np.ndarray, n: int) -> np.ndarray:
    r"""Coefficients :math:`e_m` (``m = 0..n-1``) of :math:`\prod_{i \le k}(1 + z c_i)` for every
    prefix ``k``; ``c`` has shape ``(L, N)`` (tokens, nodes), the result ``(n, L, N)``. Positive
    cumulative sums along the token axis: :math:`e_m^{(k)} = \sum_{i \le k} c_i e_{m-1}^{(i-1)}`."""
    L, N = c.shape
    out = np.empty((n, L, N))
    out[0] = 1.0
    if n > 1:
        np.cumsum(c, axis=0, out=out[1])
    for m in range(2, n):
        sh = np.empty((L, N))
        sh[0] = 0.0
        np.multiply(c[1:], out[m - 1][:-1], out=sh[1:])
        np.cumsum(sh, axis=0, out=out[m])
    return out


def _poly_ring(q: np.ndarray, t: np.ndarray, n: int) -> np.ndarray:
    r"""Coefficients (``m = 0..n-1``) of :math:`\prod_{i \le k}(a_i + z b_i)`, :math:`a_i =
    e^{-q_i t}`, :math:`b_i = 1 - a_i` (the probability that exactly ``m`` of the first ``k``
    tokens have rung by time ``t``), for every prefix ``k = 0..E``; shape ``(n, E + 1, N)``.

    The ring form of :func:`_poly_cum` (section 7.10): every coefficient lies in [0, 1] and the
    recurrence :math:`e_m^{(k)} = a_k e_m^{(k-1)} + b_k e_{m-1}^{(k-1)}` adds positive terms only,
    so there is neither overflow nor cancellation however large :math:`q_i t` is.
    """
    E, N = q.size, t.size
    x = q[:, None] * t[None, :]
    a = np.exp(-x)
    b = -np.expm1(-x)
    Y = np.zeros((n, E + 1, N))
    Y[0, 0] = 1.0
    for k in range(E):
        np.multiply(a[k], Y[:, k], out=Y[:, k + 1])
        Y[1:, k + 1] += b[k] * Y[:-1, k]
    return Y


def _t_jac_log(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ring form: nodes :math:`t = e^s` and :math:`dt/ds = t` (any range of scales)."""
    t = np.exp(s)
    return t, t


#: OpenBLAS runs a GEMM single-threaded when m * n * k is at most this (its SMP threshold).
_GEMM_1THREAD: int = 65536 * 4


def _matmul_1thread(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``a @ c`` in column blocks small enough for a single-threaded GEMM.

    These products are small (boundaries x moments x nodes); a multi-threaded GEMM on a busy machine
    waits for its worker threads far longer than the arithmetic takes.
    """
    m, k = a.shape
    x = c.shape[1]
    w = max(1, _GEMM_1THREAD // max(1, m * k))
    if w >= x:
        return a @ c
    out = np.empty((m, x))
    for s in range(0, x, w):
        np.matmul(a, c[:, s : s + w], out=out[:, s : s + w])
    return out


def _poly_mul(A: np.ndarray, B: np.ndarray, n: int) -> np.ndarray:
    """Product of two coefficient arrays ``(n, ...)`` truncated at degree ``n - 1``."""
    shape = np.broadcast_shapes(A.shape, B.shape)
    out = np.empty(shape)
    np.multiply(A[0], B, out=out)
    for i in range(1, n):
        out[i:] += A[i] * B[: n - i]
    return out


def _sub_buckets(
    rr: np.ndarray,
    qr: np.ndarray,
    n: int,
    m_bits: int,
    q1: float,
    q2: float,
    t: np.ndarray,
    ties: bool = False,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    r"""Second-level buckets inside one candidate bucket (tokens in chain order, all ``q > 0``).

    With ``ties``, the runs are the groups of equal float64 ratio instead (one group is enough):
    inside a tie group :math:`P` is linear and :math:`Q` convex in the cumulative mass, so the
    chain value is concave there and its minimum over the group sits at the group's ends (the
    caller evaluates no token inside).

    A finer key (``WOR_FAST_SUB_BITS`` more mantissa bits) splits the bucket into contiguous runs;
    their ends are chain points. Returns ``(ends, lower, prod, factor)``: the last position of
    each run, the lower bound of the ratios in it, the coefficients ``(n, runs, N)`` of the
    polynomial of the bucket's tokens up to each end (exact big tokens times aggregated moments,
    as at the first level) and the relative-error majorant factor
    :math:`(1 + P_1)e^{\gamma' P_1}` ``(runs, N)``; ``None`` if the finer key does not split.
    """
    new = np.empty(rr.size, dtype=bool)
    new[0] = True
    if ties:
        np.not_equal(rr[1:], rr[:-1], out=new[1:])
        heads = np.flatnonzero(new)
        lower = rr[heads]
    else:
        mf = min(23, m_bits + WOR_FAST_SUB_BITS)
        Mf = 1 << (8 + mf)
        bits = rr.astype(np.float32).view(np.uint32) >> np.uint32(23 - mf)
        kf = (bits & np.uint32(Mf - 1)).astype(np.intp)
        np.not_equal(kf[1:], kf[:-1], out=new[1:])
        heads = np.flatnonzero(new)
        if heads.size < 2:
            return None
        lower = _bucket_lower(mf)[kf[heads]]
    sid = np.cumsum(new) - 1
    Bs = heads.size
    ends = np.concatenate([heads[1:] - 1, [rr.size - 1]])
    A = _taylor_table(n)
    tiers: list[tuple[np.ndarray, np.ndarray, float]] = []
    for sel, X in ((qr < q1, WOR_TIER1_X), ((qr >= q1) & (qr < q2), WOR_TIER2_X)):
        if not bool(np.any(sel)):
            continue
        K, tau = _taylor_degree(X, n)
        w = qr[sel] * scale
        ss = sid[sel]
        cur = w.copy()
        Mb = np.empty((Bs, K))
        for k in range(K):
            Mb[:, k] = np.bincount(ss, weights=cur, minlength=Bs)
            if k + 1 < K:
                cur *= w
        tiers.append((np.cumsum(Mb, axis=0), A[:, 1 : K + 1].T.copy(), tau))
    bigm = qr >= q2
    big_cnt = np.searchsorted(np.flatnonzero(bigm), ends, side="right")
    sb = _Boundary(n, tiers, qr[bigm], big_cnt, tscale=1.0 / scale)
    Bc, S, P1 = sb.coeffs(t)
    return ends, lower, _poly_mul(Bc, S, n), (1.0 + P1) * np.exp(sb.gamma * P1)


def _chain_sum(c: np.ndarray, w: np.ndarray) -> np.ndarray:
    r""":math:`\sum_b w_b\, e_b^{(k)}` for every prefix ``k`` of the tokens, where :math:`e_b^{(k)}`
    are the coefficients of :math:`\prod_{i \le k}(1 + z c_i)` (positive recursion of
    :func:`_poly_cum`, accumulated level by level without storing the levels).

    ``c`` is ``(L, N)`` (tokens, nodes), ``w`` is ``(n, N)``; returns ``(L, N)``.
    """
    n = w.shape[0]
    L, N = c.shape
    acc = np.broadcast_to(w[0], (L, N)).copy()
    if n == 1:
        return acc
    Y = np.cumsum(c, axis=0)
    acc += Y * w[1]
    sh = np.empty((L, N))
    for b in range(2, n):
        sh[0] = 0.0
        np.multiply(c[1:], Y[:-1], out=sh[1:])
        np.cumsum(sh, axis=0, out=Y)
        acc += Y * w[b]
    return acc


def _sum_deg2(Bc: np.ndarray, Sc: np.ndarray, n: int) -> np.ndarray:
    r""":math:`\sum_{m=2}^{n-1} [z^m]\,(B\cdot S)` for coefficient arrays ``(n, ...)``:
    :math:`B_0 \sum_{b=2}^{n-1} S_b + B_1 \sum_{b=1}^{n-2} S_b + \sum_{a\ge2} B_a
    \sum_{b \le n-1-a} S_b` (positive sums only, no subtraction)."""
    hi = Sc[2].copy()
    for b in range(3, n):
        hi += Sc[b]
    out = Bc[0] * hi
    if n > 2:
        mid = Sc[1].copy()
        for b in range(2, n - 1):
            mid += Sc[b]
        out = out + Bc[1] * mid
    run = Sc[0].copy()
    for r in range(0, n - 2):
        if r > 0:
            run = run + Sc[r]
        out = out + Bc[n - 1 - r] * run
    return out


class _Boundary:
    """Integrand of :math:`\\sum_{m \\ge 2} G_m` at the bucket boundaries (aggregated moments)."""

    def __init__(
        self,
        n: int,
        tiers: list[tuple[np.ndarray, np.ndarray, float]],
        big_q: np.ndarray,
        big_cnt: np.ndarray,
        rate: np.ndarray | None = None,
        tscale: float = 1.0,
    ) -> None:
        # tiers: (Mcum (B, K) cumulative moments M_1..M_K, Taylor table (K, n-1), tau)
        # rate: ring form (section 7.10): per boundary, the mass that is not a big token of the
        # set (outside mass + small tokens of the set); the big tokens' polynomial is then
        # prod (a_i + z b_i), a_i = exp(-q_i t), b_i = 1 - a_i, and the weight exp(-rate t).
        self.n = n
        self.rate = rate
        # moments are of (q_i * scale), a power of two (ring form: scale ~ T keeps t^k finite)
        self.tscale = tscale
        # all tiers in one table: P_j / j at a boundary = Mcum @ (t^k a_jk / j)
        self.Mcum = np.concatenate([tr[0] for tr in tiers], axis=1) if tiers else np.zeros((big_cnt.size, 0))
        self.kpow = (
            np.concatenate([np.arange(1, tr[0].shape[1] + 1) for tr in tiers])
            if tiers
            else np.zeros(0, dtype=np.intp)
        )
        self.table = np.concatenate([tr[1] for tr in tiers], axis=0) if tiers else np.zeros((0, n))
        # Newton's signs (-1)^{j+1} j folded into the table: (K, n - 1)
        sign = np.where(np.arange(1, n) % 2 == 1, 1.0, -1.0) * np.arange(1, n)
        self.stable = self.table[:, 1:n] * sign[None, :]
        self.big_q = big_q
        self.big_cnt = big_cnt  # big tokens up to and including each boundary
        g = math.expm1(WOR_TIER2_X)  # c_i <= g for every small token at every node
        self.gamma = g / (1.0 - g * g)

    def coeffs(
        self, t: np.ndarray, rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Big-token and small-token polynomial coefficients ``(n, B, N)`` at nodes ``t`` and the
        first power sum of the small tokens ``(B, N)`` (only boundaries ``rows`` if given)."""
        n = self.n
        N = t.size
        Mcum = self.Mcum if rows is None else self.Mcum[rows]
        big_cnt = self.big_cnt if rows is None else self.big_cnt[rows]
        B = big_cnt.size
        K = self.kpow.size
        if K:
            tk = (t * self.tscale)[None, :] ** self.kpow[:, None]  # (K, N)
            C = (self.stable[:, :, None] * tk[:, None, :]).reshape(K, (n - 1) * N)
            # (-1)^{j+1} j P_j/j = (-1)^{j+1} sum_k a_jk t^k M_k, as a (n - 1, B, N) view
            sjL = _matmul_1thread(Mcum, C).reshape(B, n - 1, N).transpose(1, 0, 2)
        else:
            sjL = np.zeros((n - 1, B, N))
        # exp of the log series by m S_m = sum_j (-1)^{j+1} j L_j S_{m-j} (Newton's identities)
        S = np.empty((n, B, N))
        S[0] = 1.0
        for m in range(1, n):
            S[m] = np.einsum("jbn,jbn->bn", sjL[:m], S[m - 1 :: -1][:m]) / m
        E_need = int(big_cnt.max(initial=0))  # big tokens beyond the last row are not needed
        if E_need and self.rate is not None:
            Bc = _poly_ring(self.big_q[:E_need], t, n)[:, big_cnt, :]
        elif E_need:
            c = np.zeros((1 + E_need, N))
            np.expm1(self.big_q[:E_need, None] * t[None, :], out=c[1:])
            Y = _poly_cum(c, n)  # (n, 1 + E_need, N)
            Bc = Y[:, big_cnt, :]
        else:
            Bc = np.zeros((n, B, N))
            Bc[0] = 1.0
        return Bc, S, sjL[0]

    def integrand(
        self,
        t: np.ndarray,
        jac: np.ndarray,
        cache: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] | None = None,
        rows: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        r"""``jac e^{-t} sum_{m>=2} e_m`` ``(B, N)`` and the error majorant integrand; the
        coefficient arrays ``(Bc, S)`` are appended to ``cache`` if given (reused for the bases
        of the candidate buckets); only boundaries ``rows`` if given."""
        Bc, S, P1 = self.coeffs(t, rows)
        if cache is not None:
            cache.append((Bc, S, rows))
        if self.rate is None:
            w = (jac * np.exp(-t))[None, :]
        else:
            rate = self.rate if rows is None else self.rate[rows]
            w = jac[None, :] * np.exp(-rate[:, None] * t[None, :])
        val = w * _sum_deg2(Bc, S, self.n)
        # Error majorant (docs section 7.3): Sum_{m<n}[z^m](B*S) * exp(gamma' * P1) * (1 + P1).
        tot = w * np.sum(Bc * np.cumsum(S, axis=0)[::-1], axis=0)
        self.last_tot = tot  # all degrees (ring form: the base's relative factor, section 7.10)
        return val, tot * np.exp(self.gamma * P1) * (1.0 + P1)


def _pair_f(x: np.ndarray, rx: np.ndarray, y: np.ndarray, ry: np.ndarray) -> np.ndarray:
    r""":math:`f(x, y) = \frac{1}{1-x-y} - \frac{1}{1-x} - \frac{1}{1-y} + 1
    = \frac{xy\,(2-x-y)}{(1-x)(1-y)(1-x-y)}` (the product form: positive factors, no
    cancellation), with ``rx``, ``ry`` = :math:`1-x`, :math:`1-y` given as masses of the others."""
    return x * y * (rx + ry) / (rx * ry * (rx - y))


def _g_table(rx: np.ndarray, K: int) -> np.ndarray:
    r""":math:`g_k(x) = (1-x)^{-(k+1)} - 1`, ``k = 1..K`` (shape ``(len(rx), K)``), the coefficient
    of :math:`y^k` in :math:`f(x, y)`."""
    k1 = np.arange(2.0, K + 2.0)
    return np.expm1(-np.log(rx)[:, None] * k1[None, :])


def _small_pairs(Ms: list[np.ndarray], us: list[float]) -> tuple[np.ndarray, float]:
    r""":math:`\sum_{i<j} f(y_i, y_j)` over the small tokens from their normalised power sums
    ``Ms[t][..., a-1]`` :math:`= \sum_i y_i^a` (one array per tier, ``a = 1..K_t``), and a bound
    on the truncation (section 7.7): :math:`f(x,y) = \sum_{a,b\ge1}\binom{a+b}{a}x^ay^b`."""
    out = np.zeros(Ms[0].shape[:-1]) if Ms else np.zeros(0)
    err = 0.0
    for M, u in zip(Ms, us, strict=True):
        # 1/2 sum_{a+b<=K} C(a+b, a) (M_a M_b - M_{a+b}): ordered pairs minus the diagonal
        K = M.shape[-1]
        C = _binom_table(K, K, K)
        diag = np.array([2.0**s - 2.0 if s >= 2 else 0.0 for s in range(1, K + 1)])
        out = out + 0.5 * (np.sum((M @ C) * M, axis=-1) - M @ diag)
        err += 2.0 * (2.0 * u) ** (K - 1) / (1.0 - 2.0 * u)
    for s in range(len(Ms)):
        for t in range(s + 1, len(Ms)):
            Ka, Kb = Ms[s].shape[-1], Ms[t].shape[-1]
            out = out + np.sum((Ms[s] @ _binom_table(Ka, Kb, Ka + Kb)) * Ms[t], axis=-1)
            us_, ut = us[s], us[t]
            err += 4.0 * ((2 * us_) ** Ka + (2 * ut) ** Kb) / ((1 - 2 * us_) * (1 - 2 * ut))
    return out, err


@functools.lru_cache(maxsize=32)
def _binom_table(Ka: int, Kb: int, smax: int) -> np.ndarray:
    """``C[a-1, b-1] = binom(a+b, a)`` for ``a + b <= smax`` (else 0), ``a <= Ka``, ``b <= Kb``."""
    C = np.array(
        [[math.comb(a + b, a) if a + b <= smax else 0 for b in range(1, Kb + 1)] for a in range(1, Ka + 1)],
        dtype=np.float64,
    )
    C.flags.writeable = False
    return C


def _cross_bound(rx: np.ndarray, us: list[float], Ks: list[int]) -> np.ndarray:
    r"""Per big token :math:`x` (``rx`` = :math:`1-x`): bound on the dropped terms
    :math:`\sum_{k>K_t} y^k g_k(x)` summed over a tier (:math:`\sum y \le 1`):
    :math:`\rho^{K_t}/((1-x)^2(1-\rho))`, :math:`\rho = u_t/(1-x)`; ``inf`` if :math:`\rho \ge 1/2`."""
    out = np.zeros(rx.size)
    for u, K in zip(us, Ks, strict=True):
        rho = u / rx
        with np.errstate(divide="ignore"):
            out += np.where(rho < 0.5, rho**K / (rx * rx * (1.0 - rho)), np.inf)
    return out


def _closed3_boundaries(
    Ms: list[np.ndarray], us: list[float], xb: np.ndarray, rxb: np.ndarray, big_cnt: np.ndarray
) -> tuple[np.ndarray, float] | None:
    r"""Exact :math:`G_2(H) = \sum_{\{i,j\} \subseteq H} f(q_i, q_j)` at every boundary, without
    quadrature (``n = 3``; section 7.7).

    ``Ms``: cumulative normalised power sums of the small tokens per tier ``(B, K_t)``, ``us``
    their largest normalised mass; ``xb``, ``rxb``: the big tokens in chain order (normalised
    mass and mass of the others); ``big_cnt``: big tokens up to each boundary. Returns the values
    and a bound on the truncation of the series (rounding is added by the caller), or ``None``
    if a series would converge too slowly.
    """
    B = big_cnt.size
    G2, err = _small_pairs(Ms, us) if Ms else (np.zeros(B), 0.0)
    E = xb.size
    if E:
        F = _pair_f(xb[:, None], rxb[:, None], xb[None, :], rxb[None, :])
        d = np.concatenate([[0.0], np.cumsum(np.tril(F, -1).sum(axis=1))])
        G2 = G2 + d[big_cnt]
        Kmax = max((M.shape[1] for M in Ms), default=0)
        if Kmax:
            g = _g_table(rxb, Kmax)
            gc = np.concatenate([np.zeros((1, Kmax)), np.cumsum(g, axis=0)])[big_cnt]
            for M in Ms:
                G2 = G2 + np.einsum("bk,bk->b", M, gc[:, : M.shape[1]])
            cb = float(np.sum(_cross_bound(rxb, us, [M.shape[1] for M in Ms])))
            if not cb <= 1e-13:
                return None
            err += cb
    return G2, err


def _closed3_tokens(
    x: np.ndarray,
    rx: np.ndarray,
    tier: np.ndarray,
    Mbase: list[np.ndarray],
    us: list[float],
    bx: np.ndarray,
    brx: np.ndarray,
    gbase: np.ndarray,
    cbase: list[float],
) -> tuple[np.ndarray, np.ndarray] | None:
    r"""Increments :math:`\Delta_k = G_2(H_k) - G_2(H_{k-1}) = \sum_{j \in H_{k-1}} f(x_k, q_j)`
    along a candidate run (``n = 3``; section 7.7) and a bound on each one's truncation.

    ``x``, ``rx``: the run's tokens in chain order (normalised mass, mass of the others);
    ``tier``: -1 big, else the index of the token's moment tier; ``Mbase``: the base set's power
    sums per tier ``(K_t,)``; ``bx``, ``brx``: the base set's big tokens, ``gbase`` their
    :math:`\sum_j g_k(x_j)` ``(Kmax,)`` and ``cbase`` their :func:`_cross_bound` sums per tier
    (a small token's pairs with them go through the series :math:`\sum_k x^k g_k(x_j)`). Returns
    ``None`` when a series would converge too slowly.
    """
    L = x.size
    Kmax = max((M.size for M in Mbase), default=0)
    delta = np.zeros(L)
    bound = np.zeros(L)
    if Kmax:
        g = _g_table(rx, Kmax)  # (L, Kmax)
        for t, (M0, u) in enumerate(zip(Mbase, us, strict=True)):
            K = M0.size
            sel = (tier == t).astype(np.float64)
            pw = np.cumprod(np.broadcast_to((x * sel)[:, None], (L, K)), axis=1)
            Mex = M0[None, :] + np.concatenate([np.zeros((1, K)), np.cumsum(pw, axis=0)[:-1]])
            delta += np.einsum("lk,lk->l", Mex, g[:, :K])
            rho = u / rx
            if not bool(np.all(rho < 0.5)):
                return None
            bound += Mex[:, 0] * rho**K / (rx * rx * (1.0 - rho))
    if bx.size:
        for t, M0 in enumerate(Mbase):
            sm = np.flatnonzero(tier == t)
            if sm.size:
                K = M0.size
                pw = np.cumprod(np.broadcast_to(x[sm, None], (sm.size, K)), axis=1)
                delta[sm] += pw @ gbase[:K]
                bound[sm] += x[sm] * cbase[t]
        bg = np.flatnonzero(tier < 0)
        if bg.size:
            delta[bg] += _pair_f(x[bg, None], rx[bg, None], bx[None, :], brx[None, :]).sum(axis=1)
    ib = np.flatnonzero(tier < 0)
    if ib.size:
        F = _pair_f(x[:, None], rx[:, None], x[None, ib], rx[None, ib])
        F[np.arange(L)[:, None] <= ib[None, :]] = 0.0  # only big tokens before k
        delta += F.sum(axis=1)
    return delta, bound


def _f3(
    x: np.ndarray, rx: np.ndarray, y: np.ndarray, ry: np.ndarray, z: np.ndarray, rz: np.ndarray
) -> np.ndarray:
    r""":math:`f_3(x,y,z) = \int_0^\infty e^{-t}(e^{xt}-1)(e^{yt}-1)(e^{zt}-1)\,dt` in the product
    form of section 7.9 (positive factors only, no cancellation): with :math:`F(w) = 1/(1-w)`,

    .. math:: f_3 = xyz\,F(x+z)\bigl[F(y+z)\bigl(F(x+y)F(x+y+z) + F(z)\bigr)
              + \bigl(F(x+y) + 1\bigr)F(y)\bigl(F(y+z) + F(x)\bigr)\bigr].

    ``rx``, ``ry``, ``rz`` are :math:`1-x`, :math:`1-y`, :math:`1-z` (literal differences, the
    race's convention); :math:`1 - x - y` is computed as ``rx - y``."""
    Fx, Fy, Fz = 1.0 / rx, 1.0 / ry, 1.0 / rz
    Fxy = 1.0 / (rx - y)
    Fxz = 1.0 / (rx - z)
    Fyz = 1.0 / (ry - z)
    Fxyz = 1.0 / (rx - y - z)
    return x * y * z * Fxz * (Fyz * (Fxy * Fxyz + Fz) + (Fxy + 1.0) * Fy * (Fyz + Fx))


def _h_table(x: np.ndarray, rx: np.ndarray, y: np.ndarray, K: int) -> np.ndarray:
    r""":math:`h_c(x, y) = (1-x-y)^{-(c+1)} - (1-x)^{-(c+1)} - (1-y)^{-(c+1)} + 1`, ``c = 1..K``
    (shape ``x.shape + (K,)``), the coefficient of :math:`z^c` in :math:`f_3(x, y, z)`, as a sum
    of two positive terms (section 7.9): with :math:`m = c + 1`,
    :math:`h_c = \mathrm{expm1}(mL_x)\,\mathrm{expm1}(mA) + e^{mL_y}\,\mathrm{expm1}(mD)`,
    :math:`L_x = -\log(1-x)`, :math:`A = -\log(1 - y/(1-x))`, :math:`D = \log(1 + xy/(1-x-y))`."""
    m = np.arange(2.0, K + 2.0)
    Lx = -np.log1p(-x)
    A = -np.log1p(-y / rx)
    Ly = -np.log1p(-y)
    D = np.log1p(x * y / (rx - y))
    e = (..., None)
    return np.expm1(Lx[e] * m) * np.expm1(A[e] * m) + np.exp(Ly[e] * m) * np.expm1(D[e] * m)


@functools.lru_cache(maxsize=32)
def _triple_tables(Ka: int, Kc: int, smax: int, cross: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Multinomial tables for the small-token triples (section 7.9), exponents ``a, b <= Ka``,
    ``c <= Kc``, :math:`a + b + c \le` ``smax`` (within a tier) or :math:`a + b \le` ``smax``
    (``cross``: a pair from one tier, the single from another):
    ``T[a-1, b-1, c-1]`` :math:`= (a+b+c)!/(a!\,b!\,c!)`,
    ``U[s-1, c-1]`` :math:`= \sum_{a+b=s} T[a, b, c]`, ``w[s-1]`` :math:`= \sum_{a+b+c=s} T`
    (:math:`= 3^s - 3\cdot2^s + 3`)."""
    T = np.zeros((Ka, Ka, Kc))
    U = np.zeros((Ka, Kc))
    w = np.zeros(max(Ka, Kc))
    for a in range(1, Ka + 1):
        for b in range(1, Ka + 1):
            for c in range(1, Kc + 1):
                if (a + b > smax) if cross else (a + b + c > smax):
                    continue
                v = math.factorial(a + b + c) / (math.factorial(a) * math.factorial(b) * math.factorial(c))
                T[a - 1, b - 1, c - 1] = v
                if a + b <= Ka:
                    U[a + b - 1, c - 1] += v
                if not cross and a + b + c <= w.size:
                    w[a + b + c - 1] += v
    for arr in (T, U, w):
        arr.flags.writeable = False
    return T, U, w


def _contract3(Ma: np.ndarray, Mb: np.ndarray, Mc: np.ndarray, T: np.ndarray) -> np.ndarray:
    r""":math:`\sum_{abc} T_{abc} M^a_{ia} M^b_{ib} M^c_{ic}` per row ``i`` (one matrix product)."""
    Ka, Kb, Kc = T.shape
    Y = (Ma @ T.reshape(Ka, Kb * Kc)).reshape(-1, Kb, Kc)
    return np.sum(np.sum(Y * Mc[:, None, :], axis=2) * Mb, axis=1)


def _contract2(Ma: np.ndarray, Mb: np.ndarray, D: np.ndarray) -> np.ndarray:
    r""":math:`\sum_{ab} D_{abs} M^a_{ia} M^b_{ib}` per row ``i`` and ``s`` (one matrix product)."""
    Ka, Kb, S = D.shape
    return (Ma[:, :, None] * Mb[:, None, :]).reshape(-1, Ka * Kb) @ D.reshape(Ka * Kb, S)


@functools.lru_cache(maxsize=32)
def _multinom_table(Ka: int, Kb: int, Kc: int) -> np.ndarray:
    """``T[a-1, b-1, c-1] = (a+b+c)!/(a! b! c!)``, ``a <= Ka``, ``b <= Kb``, ``c <= Kc``."""
    f = [math.factorial(k) for k in range(Ka + Kb + Kc + 1)]
    T = np.array(
        [
            [[f[a + b + c] / (f[a] * f[b] * f[c]) for c in range(1, Kc + 1)] for b in range(1, Kb + 1)]
            for a in range(1, Ka + 1)
        ]
    )
    T.flags.writeable = False
    return T


@functools.lru_cache(maxsize=32)
def _pair_s_table(Ka: int, Kb: int, smax: int) -> np.ndarray:
    """``D[a-1, b-1, s-1] = binom(a+b, a)`` if ``a + b = s <= smax`` else 0."""
    D = np.zeros((Ka, Kb, Ka + Kb))
    for a in range(1, Ka + 1):
        for b in range(1, Kb + 1):
            if a + b <= smax:
                D[a - 1, b - 1, a + b - 1] = math.comb(a + b, a)
    D.flags.writeable = False
    return D


def _closed4_boundaries(
    Ms: list[np.ndarray], us: list[float], xb: np.ndarray, rxb: np.ndarray, big_cnt: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray] | None:
    r"""Exact :math:`G_3(H) = \sum_{\{i,j,k\} \subseteq H} f_3(q_i, q_j, q_k)` at every boundary,
    without quadrature (``n = 4``; section 7.9). Arguments as :func:`_closed3_boundaries`.

    The triples are split by class (big/small): big-big-big explicitly (product form
    :func:`_f3`), big-big-small through :math:`\sum_c M_c h_c(x, y)`, big-small-small through
    :math:`\sum_s W_s g_s(x)` and small triples through the moments (distinct-triple identity).
    Returns the values, a bound on the truncation of the series and a majorant of the terms
    subject to rounding (the caller adds ``64 eps`` times it), or ``None`` if a series would
    converge too slowly.
    """
    B = big_cnt.size
    G3 = np.zeros(B)
    maj = np.zeros(B)
    err = 0.0
    nt = len(Ms)
    # --- small-small-small ---------------------------------------------------------------
    for s in range(nt):
        M, u = Ms[s], us[s]
        K = M.shape[1]
        T, U, w = _triple_tables(K, K, K, False)
        t1 = _contract3(M, M, M, T)
        t2 = 3.0 * np.sum((M @ U) * M, axis=1)
        t3 = 2.0 * (M @ w[:K])
        G3 += (t1 - t2 + t3) / 6.0
        maj += (t1 + t2 + t3) / 6.0
        if not 3.0 * u < 0.5:
            return None
        err += 4.5 * (3.0 * u) ** (K - 2) / (1.0 - 3.0 * u)
        for t in range(nt):
            if t == s:
                continue
            Mt, ut = Ms[t], us[t]
            Kt = Mt.shape[1]
            Tc, Uc, _ = _triple_tables(K, Kt, K, True)
            # pair in tier s (a + b <= K), single in tier t
            c1 = _contract3(M, M, Mt, Tc)
            c2 = np.sum((M @ Uc) * Mt, axis=1)
            G3 += 0.5 * (c1 - c2)
            maj += 0.5 * (c1 + c2)
            x3, y3 = 3.0 * u, 3.0 * ut
            if not max(x3, y3) < 0.5:
                return None
            err += 13.5 * (K * x3 ** (K - 1) + y3**Kt) / ((1.0 - x3) ** 2 * (1.0 - y3))
            for r_ in range(t + 1, nt):
                if s > t or r_ == s:
                    continue
                # one token from each of three distinct tiers s < t < r_
                Mr, ur = Ms[r_], us[r_]
                G3 += _contract3(M, Mt, Mr, _multinom_table(K, Kt, Mr.shape[1]))
                z3 = 3.0 * ur
                if not z3 < 0.5:
                    return None
                err += 27.0 * (x3**K + y3**Kt + z3 ** Mr.shape[1]) / ((1.0 - x3) * (1.0 - y3) * (1.0 - z3))
    E = xb.size
    if not E:
        return G3, err, maj
    # --- big-big-big ---------------------------------------------------------------------
    if E >= 3:
        X, RX = xb, rxb
        F = _f3(
            X[:, None, None],
            RX[:, None, None],
            X[None, :, None],
            RX[None, :, None],
            X[None, None, :],
            RX[None, None, :],
        )
        i, j, k = np.indices((E, E, E), sparse=True)
        F = np.where((i < j) & (j < k), F, 0.0)  # triples i < j < k, added at k
        d3 = np.concatenate([[0.0], np.cumsum(F.sum(axis=(0, 1)))])
        G3 += d3[big_cnt]
    if not nt:
        return G3, err, maj
    Kmax = max(M.shape[1] for M in Ms)
    # --- big-big-small: sum over big pairs of sum_c M_c h_c(x, y) ----------------------------
    if E >= 2:
        iu, ju = np.triu_indices(E, 1)  # pair (i, j), i < j, added at j
        Hc = _h_table(xb[iu], rxb[iu], xb[ju], Kmax)  # (pairs, Kmax)
        Hcum = np.zeros((E + 1, Kmax))
        np.add.at(Hcum[1:], ju, Hc)
        np.cumsum(Hcum, axis=0, out=Hcum)
        Hb = Hcum[big_cnt]
        for M in Ms:
            G3 += np.einsum("bk,bk->b", M, Hb[:, : M.shape[1]])
        rw = rxb[iu] - xb[ju]  # 1 - x - y
        for M, u in zip(Ms, us, strict=True):
            rho = u / rw
            if not bool(np.all(rho < 0.5)):
                return None
            err += float(np.sum(rho ** M.shape[1] / (rw * rw * (1.0 - rho))))
    # --- big-small-small: sum_s W_s(H) Gamma_s(H), Gamma_s = sum_{big x in H} g_s(x) ---------
    Smax = 2 * Kmax
    g = _g_table(rxb, Smax)  # g_s(x), s = 1..Smax
    gc = np.concatenate([np.zeros((1, Smax)), np.cumsum(g, axis=0)])[big_cnt]
    W = np.zeros((B, Smax))
    Wm = np.zeros((B, Smax))
    for s in range(nt):
        M, u = Ms[s], us[s]
        K = M.shape[1]
        pp = _contract2(M, M, _pair_s_table(K, K, K))[:, :K]
        dg = M * np.array([2.0**ss - 2.0 for ss in range(1, K + 1)])[None, :]
        W[:, :K] += 0.5 * (pp - dg)
        Wm[:, :K] += 0.5 * (pp + dg)
        for t in range(s + 1, nt):
            Mt = Ms[t]
            Kt = Mt.shape[1]
            W[:, : K + Kt] += _contract2(M, Mt, _pair_s_table(K, Kt, K + Kt))
    G3 += np.einsum("bs,bs->b", W, gc)
    maj += np.einsum("bs,bs->b", Wm, gc)
    rx3 = rxb**3
    for s in range(nt):
        u, K = us[s], Ms[s].shape[1]
        r2 = 2.0 * u / rxb
        if not bool(np.all(r2 < 0.5)):
            return None
        err += float(np.sum(2.0 * K * r2 ** (K - 1) / (rx3 * (1.0 - r2) ** 2)))
        for t in range(s + 1, nt):
            r2t = 2.0 * us[t] / rxb
            Kt = Ms[t].shape[1]
            err += float(np.sum(4.0 * (r2**K + r2t**Kt) / (rx3 * (1.0 - r2) * (1.0 - r2t))))
    return G3, err, maj


def _quad_rows(
    bnd: _Boundary, rows: np.ndarray, T: float, cache: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """Trapezoid rules (section 7.4, no pruning) for the boundaries ``rows`` only, halving the
    step until the estimate of :func:`_quad_error` is below ``WOR_FAST_CHANGE`` (or the step below
    ``WOR_FAST_MIN_STEP``); the coefficients go to ``cache``. Returns the nodes (in ``u``), the
    mask of the coarser rule's nodes, the final step, the integrals and their majorants."""
    u_lo, u_hi = _u_of_t(WOR_T_LO), _u_of_t(T)
    h = WOR_FAST_STEP
    J = max(2, math.ceil((u_hi - u_lo) / h))
    nodes_s = u_lo + h * np.arange(J + 1)
    val, maj = bnd.integrand(*_t_jac(nodes_s), cache=cache, rows=rows)
    Iv = h * val.sum(axis=1)
    Im = h * maj.sum(axis=1)
    while True:
        mids = u_lo + h * (np.arange(J) + 0.5)
        v2, m2 = bnd.integrand(*_t_jac(mids), cache=cache, rows=rows)
        I_new = 0.5 * Iv + (h / 2) * v2.sum(axis=1)
        Im = 0.5 * Im + (h / 2) * m2.sum(axis=1)
        change = _quad_error(np.abs(I_new - Iv), I_new)
        coarse = np.concatenate([np.ones(nodes_s.size, dtype=bool), np.zeros(mids.size, dtype=bool)])
        nodes_s = np.concatenate([nodes_s, mids])
        Iv = I_new
        h /= 2
        J *= 2
        if float(np.max(change, initial=0.0)) <= WOR_FAST_CHANGE or h < WOR_FAST_MIN_STEP:
            return nodes_s, coarse, h, Iv, Im


def _token_values(
    chain: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    a0: int,
    a1: int,
    If: np.ndarray | None,
    qe: np.ndarray | None,
    tail: float,
    relf: float,
    sum_rel: float = 8 * _EPS,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Chain values :math:`f = 1 + P - Q` of the tokens ``a0:a1`` of a candidate run and their
    error bounds, from the run's cumulative sums ``chain = (P, S, lambda, G_1, G_1 error)``, the
    quadrature part ``If`` of :math:`\sum_{m \ge 2} G_m` (``None`` for ``n = 2``), its error
    estimate ``qe``, the tail bound and the relative error factor ``relf``."""
    Pk, Sk, lamk, Gk, Gek = (x[a0:a1] for x in chain)
    if If is None or qe is None:
        Gs, Ges = Gk, Gek
    else:
        Gs = Gk + If
        Ges = Gek + qe + tail + relf * If
    with np.errstate(invalid="ignore"):  # (lambda = 0: the whole support, Q = S exactly)
        lg = np.where(lamk > 0.0, lamk * Gs, 0.0)
        ek = np.where(lamk > 0.0, lamk * Ges, 0.0) + sum_rel * (Sk + lg)
    Qk = np.clip(Sk - lg, 0.0, 1.0)
    return 1.0 + Pk - Qk, ek


def _tail_log(m: int, rho: float, K: int, T: float) -> float:
    r"""The bound of :func:`.wor._tail`, :math:`\min(\Gamma(m+1,\rho T)/(m!\,\rho^{m+1}),\;
    K^m e^{-\rho T}/(m!\,\rho))`, evaluated in logarithms (no underflow of :math:`\rho^{m+1}`
    for the tiny :math:`\rho` of peaked drafts)."""
    from scipy.special import gammaincc

    g = float(gammaincc(m + 1, rho * T))
    lg = (math.log(g) if g > 0.0 else -math.inf) - (m + 1) * math.log(rho)
    lk = m * math.log(max(K, 1)) - math.lgamma(m + 1) - rho * T - math.log(rho)
    x = min(lg, lk)
    return math.exp(x) if x < 700 else math.inf


def _tail_start(levels: list[int], rho: np.ndarray) -> np.ndarray:
    r"""Where the right-tail bound :math:`\Gamma(m+1, \rho_m T)/(m!\,\rho_m^{m+1})` reaches
    ``WOR_TAIL_TOL``: :math:`T = Q^{-1}(m+1, \mathrm{tol}\,\rho_m^{m+1})/\rho_m` (inverse regularised
    upper incomplete gamma), at least 1. The caller re-checks the bound at this point."""
    from scipy.special import gammainccinv

    m = np.asarray(levels, dtype=np.float64)
    r = rho[np.asarray(levels)]
    with np.errstate(under="ignore"):
        y = WOR_TAIL_TOL * r ** (m + 1)
    x = gammainccinv(m + 1, np.maximum(y, 1e-300))
    return np.maximum(1.0, np.where(np.isfinite(x), x, np.inf) / r)


def _quad_error(change: np.ndarray, value: np.ndarray) -> np.ndarray:
    r"""Error estimate of the finer of two trapezoid rules (steps :math:`h`, :math:`2h`).

    For an integrand analytic in a strip of half-width :math:`d`, :math:`E_h \approx 2M
    e^{-2\pi d/h}` with :math:`M \ge` the integral (positive integrand), so
    :math:`E_h \approx E_{2h}^2/(2M) \le \Delta^2/(2I)` with :math:`\Delta = |T_h - T_{2h}|
    \approx E_{2h}`. We return :math:`\Delta^2/I` (a factor 2 of safety) once
    :math:`\Delta \le` ``WOR_FAST_ASYMPTOTIC`` :math:`\cdot I`, else :math:`\Delta` itself.
    An estimate, not a proof (docs section 7.4).
    """
    safe = np.maximum(value, 1e-300)
    with np.errstate(over="ignore"):
        sq = change * change / safe
    return np.where(change <= WOR_FAST_ASYMPTOTIC * safe, np.maximum(sq, 0.0), change)


def _outside_masses(x: np.ndarray, top: int) -> np.ndarray:
    """``out[m]`` = mass of ``x`` (non-negative) outside its ``m`` largest entries, ``m = 0..top``,
    as sums of the remaining entries (never ``1 - top``).

    The ``top`` largest entries are found among those above ``max(x) / 1024`` when there are enough
    of them (one comparison pass), else by a full partition.
    """
    V = x.size
    out = np.zeros(top + 1)
    if top == 0:
        out[0] = float(np.sum(x))
        return out
    if top >= V:
        head = np.sort(x)[::-1]
        rest = 0.0
    else:
        cut = float(np.max(x)) / 1024.0
        above = x >= cut
        sub = x[above]
        if sub.size >= top:
            part = np.partition(sub, sub.size - top)
            head = np.sort(part[sub.size - top :])[::-1]
            rest = float(np.sum(x, where=~above)) + float(np.sum(part[: sub.size - top]))
        else:
            part = np.partition(x, V - top)
            head = np.sort(part[V - top :])[::-1]
            rest = float(np.sum(part[: V - top]))
    for m in range(top, -1, -1):
        out[m] = rest + (float(np.sum(head[m:])) if m < head.size else 0.0)
    return out


def _outside_masses_lower(x: np.ndarray, top: int, tot: float) -> np.ndarray:
    r"""Lower bounds on :func:`_outside_masses` (``out[m]``, ``m = 0..top``) from the total
    ``tot = sum(x)``, without a masked pass over ``x``.

    The ``top`` largest entries lie among those :math:`\ge \max(x)/c` (:math:`c = 16`, else
    :math:`c = 1024`) when there are at least ``top`` of them; the mass outside that set is
    ``tot`` minus its sum. Both sums are pairwise
    (error :math:`\le (\log_2 V + 8)\varepsilon\,` tot each), so subtracting
    :math:`2(\log_2 V + 8)\varepsilon\,` tot gives a lower bound; a lower :math:`\rho` only
    makes the tail bounds and the decline test more conservative. Falls back to the exact
    :func:`_outside_masses` otherwise.
    """
    V = x.size
    if top == 0 or top >= V:
        return _outside_masses(x, top)
    xmax = float(np.max(x))
    sub = x[x >= xmax / 16.0]  # usually enough (a short gather); else a lower cut
    if sub.size < top:
        sub = x[x >= xmax / 1024.0]
        if sub.size < top:
            return _outside_masses(x, top)
    part = np.partition(sub, sub.size - top)
    head = np.sort(part[sub.size - top :])[::-1]
    rest = (tot - float(np.sum(sub))) + float(np.sum(part[: sub.size - top]))
    margin = 2.0 * (math.log2(V) + 8.0) * _EPS * tot
    out = np.zeros(top + 1)
    for m in range(top, -1, -1):
        out[m] = max(rest + float(np.sum(head[m:])) - margin, 0.0)
    return out


def _odds(q: np.ndarray, idx: np.ndarray, tot: float) -> np.ndarray:
    r""":math:`q_i/(1 - q_i)` for the tokens ``idx``, with :math:`1 - q_i` the mass of the others:
    ``tot - q_i`` (exact to a relative :math:`\varepsilon` when :math:`q_i \le` tot/2) or, for the
    at most one larger token, the explicit sum of the others."""
    return q[idx] / _rest(q, idx, tot)


def _rest(q: np.ndarray, idx: np.ndarray, tot: float) -> np.ndarray:
    """Mass of the other tokens, ``tot - q_i`` (or, above tot/2, the explicit sum of the others)."""
    qi = q[idx]
    rest = tot - qi
    for j in np.flatnonzero(qi > 0.5 * tot):
        g = int(idx[j])
        rest[j] = float(np.sum(q[:g])) + float(np.sum(q[g + 1 :]))
    return rest


def _t_jac(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Nodes :math:`t = \sigma(u)^2`, :math:`\sigma(u) = \log(1 + e^{v})`, :math:`v = u - e^{-u}`,
    and :math:`dt/du`.

    As :math:`u \to -\infty`, :math:`t \approx e^{2v}` decays double-exponentially (the integrand
    behaves like :math:`t^{m+1}` at 0); for large :math:`u`, :math:`t \approx u^2`, so the node
    spacing grows like :math:`\sqrt t`, the width of the bump of :math:`e^{-t}e_m` near
    :math:`t \approx m` (docs section 7.2).
    """
    emu = np.exp(-u)
    v = u - emu
    sp = np.logaddexp(0.0, v)  # softplus, no overflow
    sig = np.exp(v - sp)  # logistic sigmoid of v = d softplus / dv
    return sp * sp, 2.0 * sp * sig * (1.0 + emu)


def _u_of_t(t: float) -> float:
    r"""Inverse of :func:`_t_jac`'s map: :math:`v = \log(e^{\sqrt t} - 1)`, then Newton on the
    increasing :math:`u - e^{-u} = v`."""
    sq = math.sqrt(t)
    v = math.log(math.expm1(sq)) if sq < 30.0 else sq + math.log1p(-math.exp(-sq))
    u = v if v > 0.0 else -math.log(1.0 - v)  # initial guess on each branch
    for _ in range(100):
        g = u - math.exp(-u) - v
        u -= g / (1.0 + math.exp(-u))
        if abs(g) <= 1e-13 * (1.0 + abs(v)):
            break
    return u


class _NonFinite(Exception):
    """A sub-bucket end evaluated to a non-finite value (the caller declines the row)."""


def _adaptive_spec(r: np.ndarray, M: int) -> tuple[int, int, int] | None:
    """A key spec ``(M, base, sh)`` whose ``M - 1`` first buckets cover the float32 patterns of
    the finite ratios ``r`` (the last bucket also takes ``inf``/``nan``), or ``None`` if the
    default key is as fine."""
    with np.errstate(over="ignore", invalid="ignore"):
        r32 = r.astype(np.float32)
    fin = r32[np.isfinite(r32)]
    if fin.size < 2:
        return None
    lo_b = int(np.abs(fin.min()).view(np.uint32))
    hi_b = int(np.abs(fin.max()).view(np.uint32))
    span = hi_b - lo_b
    sh = int(span // (M - 2)).bit_length()  # span >> sh <= M - 2
    return M, lo_b, sh


@functools.lru_cache(maxsize=64)
def _spec_lower(M: int, base: int, sh: int) -> np.ndarray:
    r"""Lower bounds of the ratios in each bucket of a key spec (as :func:`.fastprefix._bucket_lower`:
    a float64 that rounds to a float32 :math:`x \ge L` is :math:`\ge L(1 - 2^{-24})`; subnormal
    starts give 0, starts at or beyond ``inf`` give :math:`\mathrm{FLT\_MAX}(1 - 2^{-23})`)."""
    starts = np.minimum(base + (np.arange(M, dtype=np.int64) << sh), 0x7F800000).astype(np.uint32)
    lo = starts.view(np.float32).astype(np.float64) * (1.0 - 2.0**-23)
    expo = starts >> 23
    lo[expo == 0] = 0.0
    lo[expo >= 255] = float(np.finfo(np.float32).max) * (1.0 - 2.0**-23)
    lo.flags.writeable = False
    return lo


def _keys_and_moments(
    p: np.ndarray,
    q: np.ndarray,
    m_bits: int,
    q1: float | None,
    K: int,
    scale: float = 1.0,
    spec: tuple[int, int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    r"""Ratios ``r = p/q``, bucket keys, per-bucket ``p`` masses and (if ``q1`` is given) the first
    tier's per-bucket moments :math:`M_k = \sum_{i: q_i < q_1} q_i^k`, ``k = 1..K`` (shape
    ``(K, M)``) and the indices of the other tokens (:math:`q_i \ge q_1`, ascending), in one
    sweep over chunks of ``WOR_FAST_CHUNK`` tokens.

    The same operations as whole-row passes (the keys are bit-identical; the sums are positive
    sums in another order), but each chunk's temporaries stay in cache: 2x faster at V = 256k.
    """
    V = p.size
    # key = min(((float32 bits) & 0x7fffffff - base) >> sh, M - 1): the default spec (base 0,
    # sh = 23 - m_bits) is the top 8 + m_bits bits of fl32(r) without the sign; an adaptive spec
    # (_adaptive_spec) spends the buckets on the range the ratios occupy
    M, base, shift = spec if spec is not None else (1 << (8 + m_bits), 0, 23 - m_bits)
    C = min(V, WOR_FAST_CHUNK)
    r = np.empty(V)
    key = np.empty(V, dtype=np.intp)
    bp_all = np.zeros(M)
    Mb = np.zeros((K, M)) if q1 is not None else None
    his: list[np.ndarray] = []
    f32 = np.empty(C, dtype=np.float32)
    u32 = np.empty(C, dtype=np.uint32)
    w = np.empty(C)
    cur = np.empty(C)
    sh = np.uint32(shift)
    msk = np.uint32(0x7FFFFFFF)
    top = np.uint32(M - 1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for s in range(0, V, C):
            e = min(V, s + C)
            c = e - s
            rs = r[s:e]
            np.divide(p[s:e], q[s:e], out=rs)
            f32[:c] = rs  # float32 rounding, as r.astype(np.float32)
            np.bitwise_and(f32[:c].view(np.uint32), msk, out=u32[:c])
            if base:
                np.subtract(u32[:c], np.uint32(base), out=u32[:c])  # (base <= every pattern)
            np.right_shift(u32[:c], sh, out=u32[:c])
            if spec is not None:
                np.minimum(u32[:c], top, out=u32[:c])
            ks = key[s:e]
            ks[...] = u32[:c]
            bp_all += np.bincount(ks, weights=p[s:e], minlength=M)
            if Mb is not None:
                qs = q[s:e]
                hic = np.flatnonzero(qs >= q1)  # the few tokens above the first tier
                his.append(hic + s)
                np.copyto(w[:c], qs)
                w[hic] = 0.0
                if scale != 1.0:
                    w[:c] *= scale  # (a power of two: exact) moments of q * scale
                Mb[0] += np.bincount(ks, weights=w[:c], minlength=M)
                for k in range(1, K):
                    np.multiply(w[:c] if k == 1 else cur[:c], w[:c], out=cur[:c])
                    Mb[k] += np.bincount(ks, weights=cur[:c], minlength=M)
    hi_idx = np.concatenate(his) if his else np.zeros(0, dtype=np.intp)
    return r, key, bp_all, Mb, hi_idx


def wor_prefix_fast(
    p: np.ndarray,
    q: np.ndarray,
    n: int,
    *,
    mantissa_bits: int | None = None,
    min_v: int = WOR_FAST_MIN_V,
) -> WorFast | None:
    r"""Exact :math:`\alpha^*` and witness for ``WithoutReplacement(q, n)``, one row, bucketed.

    Parameters
    ----------
    p, q
        ``(V,)`` float64 target and draft distributions (validated; ``q`` has at least ``n``
        positive entries).
    n
        Number of drafts, ``>= 2``.
    mantissa_bits
        Float32 mantissa bits of the bucket key (default :func:`wor_fast_mantissa_bits`).
    min_v
        Smaller vocabularies return ``None`` (use the reference).

    Returns
    -------
    WorFast or None
        ``None`` when the fast path does not apply (small ``V``, peaked ``q`` needing deflation, too
        many large tokens, an integration range beyond ``WOR_FAST_T_MAX``, a float64 overflow
        risk, or an error bound above ``WOR_FAST_MAX_ERROR``); the caller then uses
        :func:`spectheory.solvers.wor.wor_chain` on the sorted row. Otherwise ``error`` bounds
        the absolute error of ``value`` (quadrature part: an estimate, see the docs).
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    V = p.size
    if V < min_v or n < 2:
        return None
    m_bits = wor_fast_mantissa_bits(V, n) if mantissa_bits is None else int(mantissa_bits)
    if not 0 <= m_bits <= 23:
        raise ValueError(f"argument 'mantissa_bits': must be in 0..23, got {m_bits}")
    M = 1 << (8 + m_bits)
    lo_all = _bucket_lower(m_bits)
    info: dict[str, float] = {}

    # --- 1. keys, occupied buckets, per-bucket sums -------------------------------------------
    # (the keys are computed after the integration range, in cache-sized chunks together with
    # the first tier's moments: _keys_and_moments)
    tot = float(np.sum(q))
    nodes_s = np.zeros(0)
    coarse = np.zeros(0, dtype=bool)
    h = trunc = tail = g1_rel = 0.0
    rho = Iv = Im = It = np.zeros(0)
    bnd: _Boundary | None = None
    # (per-bucket moments (K, M) of a tier, its Taylor table (K, n - 1), tau)
    tier_mom: list[tuple[np.ndarray, np.ndarray, float]] = []
    tier_hi: list[float] = []  # upper end of each tier's masses
    ring = False
    qs_bnd = np.zeros(0)
    if n >= 3:
        rho = _outside_masses_lower(q, n - 1, tot)
        # peaked q (the reference deflates the dominant token): the ring form of section 7.10
        ring = bool(rho[n - 1] < WOR_RHO_MIN)
        if not rho[n - 1] > 0.0:
            return None
        levels = list(range(2, n))
        T = 1.0
        Tstart = _tail_start(levels, rho)
        for m in levels:
            Tm = float(Tstart[m - 2])
            # V >= the number of positive q_i: the tail bound only gets larger (safe)
            while _tail_log(m, float(rho[m]), V, Tm) > WOR_TAIL_TOL:
                Tm *= 1.25
                if Tm > WOR_FAST_RING_T_MAX:
                    return None
            if not Tm <= WOR_FAST_RING_T_MAX:
                return None
            ring = ring or Tm > WOR_FAST_T_MAX
            T = max(T, Tm)
            tail += _tail_log(m, float(rho[m]), V, Tm)
            tail += WOR_T_LO ** (m + 1) * math.exp((m - 1) * WOR_T_LO) / math.factorial(m + 1)
        q1 = WOR_TIER1_X / T
        q2 = WOR_TIER2_X / T
        if not tot > 4.0 * q2:
            return None  # (cannot happen for a validated distribution; guards the G_1 series)
        K1, tau1 = _taylor_degree(WOR_TIER1_X, n)
        if n == 4 and WOR_FAST_CLOSED4:
            K1 = max(K1, WOR_FAST_CLOSED4_K1)  # (tau1 stays a valid, larger bound)
        # hi_idx: tier 2 and big tokens (q >= q1), a few percent of V
        # ring form: moments of q * mscale (a power of two near T), so that t^k stays finite
        mscale = 2.0 ** round(math.log2(T)) if ring else 1.0
        if ring:
            info["ring"] = 1.0
        r, key, bp_all, Mb1, hi_idx = _keys_and_moments(p, q, m_bits, q1, K1, mscale)
        assert Mb1 is not None
        if (
            mantissa_bits is None
            and V >= WOR_FAST_ADAPT_MIN_V
            and int(np.count_nonzero((bp_all > 0) | (Mb1[0] > 0))) < WOR_FAST_ADAPT_MIN_OCC
        ):
            # crowded ratios (distilled / quantised drafts: p/q within a few percent of 1) fall
            # into a handful of buckets: spend the buckets on the occupied range instead
            spec = _adaptive_spec(r, WOR_FAST_ADAPT_BUCKETS)
            if spec is not None:
                r, key, bp_all, Mb1, hi_idx = _keys_and_moments(p, q, m_bits, q1, K1, mscale, spec)
                M = spec[0]
                lo_all = _spec_lower(*spec)
                m_bits = max(0, 23 - spec[2])  # resolution of the adaptive key (sub-buckets)
                info["adaptive_key"] = 1.0
        qh = q[hi_idx]
        bigsel = qh >= q2
        bidx = hi_idx[bigsel]
        mid = hi_idx[~bigsel]
        n_big = bidx.size
        if n_big > (WOR_FAST_RING_MAX_BIG if ring else WOR_FAST_MAX_BIG):
            return None
        info["big_tokens"] = float(n_big)
        # e_m of the big tokens <= C(E, m) e^{(1 - rho_m) t}: stay far from float64 overflow.
        logc = math.lgamma(n_big + 1) - math.lgamma(n) - math.lgamma(max(n_big - n + 2, 1))
        if not ring and max(logc, 0.0) + (1.0 - float(rho[n - 1])) * T > 600.0:
            return None
        A = _taylor_table(n)
        # Tier 1 (most tokens): masked weights over the whole row, no gather. The moments also
        # give q(bucket) (M_1) and G_1 = sum_i q_i/(tot - q_i) = sum_k M_k / tot^k (section 7.2).
        bq_all = np.zeros(M)
        ba_all = np.zeros(M)
        for kk, w, X, qhi in ((None, None, WOR_TIER1_X, q1), (key[mid], qh[~bigsel], WOR_TIER2_X, q2)):
            if kk is None or w is None:
                K, tau, Mb = K1, tau1, Mb1
            else:
                if w.size == 0:
                    continue
                K, tau = _taylor_degree(X, n)
                w = w * mscale
                Mb = np.empty((K, M))
                Mb[0] = np.bincount(kk, weights=w, minlength=M)
                cur = np.empty_like(w)
                for k in range(1, K):
                    np.multiply(w if k == 1 else cur, w, out=cur)
                    Mb[k] = np.bincount(kk, weights=cur, minlength=M)
            bq_all += Mb[0] / mscale
            ba_all += ((tot * mscale) ** -np.arange(1.0, K + 1.0)) @ Mb
            # sum_{k > K} (q_i/tot)^k <= (q_i/tot) rho^K / (1 - rho), rho = qhi / tot
            g1_rel = max(g1_rel, (qhi / tot) ** K / (1.0 - qhi / tot))
            tier_mom.append((Mb, A[:, 1 : K + 1].T.copy(), tau))
            tier_hi.append(qhi)
            trunc = max(trunc, tau)
        if n_big:
            kb = key[bidx]
            qb = q[bidx]
            restb = tot - qb
            jb_ = int(np.argmax(qb))
            if qb[jb_] > 0.5 * tot:  # the at most one token above half: sum of the others
                j0 = int(bidx[jb_])
                restb[jb_] = float(np.sum(q[:j0])) + float(np.sum(q[j0 + 1 :]))
            bq_all += np.bincount(kb, weights=qb, minlength=M)
            ba_all += np.bincount(kb, weights=qb / restb, minlength=M)
    else:
        r, key, bp_all, _, _ = _keys_and_moments(p, q, m_bits, None, 0)
        bq_all = np.bincount(key, weights=q, minlength=M)
        # 1 - q_i as the mass of the other tokens: tot - q_i is exact to a relative eps when
        # q_i <= tot / 2; the (at most one) larger token gets the explicit sum of the others.
        jmax = int(np.argmax(q))
        rest = tot - q
        if q[jmax] > 0.5 * tot:
            rest[jmax] = float(np.sum(q[:jmax])) + float(np.sum(q[jmax + 1 :]))
        # rest > 0: at least two tokens have q > 0 (n >= 2 positive entries, validated)
        ba_all = np.bincount(key, weights=q / rest, minlength=M)
    # Buckets holding only p = q = 0 tokens change nothing on the chain and are skipped.
    occ = np.flatnonzero((bp_all > 0) | (bq_all > 0))
    nb = occ.size
    info["buckets"] = float(nb)
    bp = bp_all[occ]
    bq = bq_all[occ]
    ba = ba_all[occ]
    Pc = np.cumsum(bp)
    Sc = np.cumsum(bq)
    Ac = np.cumsum(ba)
    lam = _suffix_after(bq)  # mass after each boundary: suffix sums of bucket masses
    G = Ac.copy()
    Gerr = (8 * _EPS + g1_rel) * Ac
    coef_cache: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    # Rounding of S, lambda and G (sums of up to V positive terms, bincount then cumsum): an
    # estimate, 16 sqrt(V) eps relative, as the reference's for its node sums (a flat q at
    # V = 32k measured 9e-14 against exact fractions, above the former 8 eps)
    sum_rel = 8 * _EPS + 16 * _EPS * math.sqrt(V)
    # ring form: boundaries and buckets that cannot beat the best by more than the slack are
    # neither refined nor evaluated (the slack joins the error bound)
    slack = WOR_FAST_RING_SLACK if ring else 0.0
    # node map: u of _t_jac (plain form) or s = log t (ring form, section 7.10)
    tmap, umap = (_t_jac_log, math.log) if ring else (_t_jac, _u_of_t)
    # Rounding estimate, relative (moments, exp series, products): the plain form loses about
    # eps/rho in e^{-t} prod e^{q_i t}; the ring form has no such cancellation (its weight
    # exp(-rate t) carries the relative error of a positive sum, times rate * t ~ n where the
    # integrand lives; a_i = exp(-q_i t) likewise).
    rel_round = 0.0
    if n >= 3:
        cancel = (2.0 + n) if ring else (1.0 + 1.0 / float(rho[n - 1]))
        rel_round = 256 * _EPS * cancel + 64 * _EPS * n
    closed: tuple[np.ndarray, float] | None = None
    closed4 = False
    if n >= 3:
        tiers = [(np.cumsum(Mb[:, occ].T, axis=0), tb, tau) for Mb, tb, tau in tier_mom]
        bo = bidx[np.argsort(r[bidx], kind="stable")] if n_big else bidx
        # boundary b ends bucket occ[b]: big tokens with key <= occ[b]
        big_cnt = (
            np.searchsorted(np.sort(key[bo]), occ, side="right") if n_big else np.zeros(nb, dtype=np.intp)
        )
        rate = None
        if ring:
            # mass not in the set's big tokens: outside mass + the set's small tokens (M_1 sums)
            qs_bnd = sum((tr[0][:, 0] for tr in tiers), np.zeros(nb)) / mscale
            rate = lam + qs_bnd
        bnd = _Boundary(n, tiers, q[bo], big_cnt, rate, 1.0 / mscale)

        if n == 3 and WOR_FAST_CLOSED3 and n_big <= WOR_FAST_CLOSED3_MAX_BIG and not ring:
            # the race's convention (as the quadrature and the reference): rate 1 in total, so
            # "1 - x" is the literal 1 - x (exact for x >= 1/2, relative eps below)
            xb = q[bo]
            rxb = 1.0 - xb
            Ms3 = [tr[0] for tr in tiers]
            us3 = list(tier_hi)
            closed = _closed3_boundaries(Ms3, us3, xb, rxb, big_cnt)
        if (
            n == 4
            and WOR_FAST_CLOSED4
            and not ring
            and int(np.sum(q[bo] >= WOR_FAST_CLOSED4_BIG)) <= WOR_FAST_CLOSED4_MAX_BIG
        ):
            # tokens of the big list below WOR_FAST_CLOSED4_BIG form a third moment tier (their
            # cumulative power sums along the chain); only the few above it are summed explicitly
            xall = q[bo]
            isb = xall >= WOR_FAST_CLOSED4_BIG
            # (merged into the second tier when there is one: fewer cross-tier products)
            Ms4 = [tr[0] for tr in tiers]
            us4 = list(tier_hi)
            if not bool(np.all(isb)):
                Km = Ms4[1].shape[1] if len(Ms4) > 1 else WOR_FAST_CLOSED4_KMED
                pw = np.where(isb, 0.0, xall)[:, None] ** np.arange(1.0, Km + 1.0)[None, :]
                Mmed = np.zeros((n_big + 1, Km))
                np.cumsum(pw, axis=0, out=Mmed[1:])
                if len(Ms4) > 1:
                    Ms4[1] = Ms4[1] + Mmed[big_cnt]
                    us4[1] = max(us4[1], WOR_FAST_CLOSED4_BIG)
                else:
                    Ms4.append(Mmed[big_cnt])
                    us4.append(WOR_FAST_CLOSED4_BIG)
            cnt4 = np.concatenate([[0], np.cumsum(isb)])[big_cnt]
            xb4 = xall[isb]
            rxb4 = 1.0 - xb4
            # (the explicit pair/triple arrays include masked diagonal entries, which may divide
            # by zero when a few tokens hold all the mass)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                c2 = _closed3_boundaries(Ms4, us4, xb4, rxb4, cnt4)
                c3 = _closed4_boundaries(Ms4, us4, xb4, rxb4, cnt4) if c2 is not None else None
            if c2 is not None and c3 is not None:
                # n = 4 in closed form at the boundaries (section 7.9): G_2 + G_3 exactly, no
                # quadrature; rounding: positive sums of at most E^2 + K^3 + 64 terms each, and
                # the within-tier differences through their majorant
                G2b, e2 = c2
                G3b, e3, maj3 = c3
                nsum = xb4.size**2 + max((M.shape[1] for M in Ms4), default=0) ** 3 + 64
                G = G + G2b + G3b
                Gerr = Gerr + e2 + e3 + 16 * _EPS * G2b + nsum * _EPS * (G3b + maj3)
                R = np.arange(nb)
                cand_c = np.ones(nb, dtype=bool)
                Iv = np.zeros(nb)
                Im = np.zeros(nb)
                info["quad_nodes"] = 0.0
                info["closed_form"] = 1.0
                closed4 = True
        if closed4:
            pass  # (G_2 + G_3 set above; the candidate tokens run the quadrature on their bases)
        elif closed is not None:
            # n = 3 in closed form (section 7.7): G_2 exactly at every boundary, no quadrature
            G2b, e2 = closed
            K3 = max((M.shape[1] for M in Ms3), default=0)
            gcum3 = np.zeros((n_big + 1, K3))
            if n_big and K3:
                np.cumsum(_g_table(rxb, K3), axis=0, out=gcum3[1:])
            ccum3 = [
                np.concatenate([[0.0], np.cumsum(_cross_bound(rxb, [u], [M.shape[1]]))])
                for M, u in zip(Ms3, us3, strict=True)
            ]
            G = G + G2b
            Gerr = Gerr + e2 + 16 * _EPS * G2b
            R = np.arange(nb)
            cand_c = np.ones(nb, dtype=bool)
            rel = 0.0
            info["quad_nodes"] = 0.0
            info["closed_form"] = 1.0
        else:
            # --- quadrature in u (map of _t_jac), halving the step until the error estimate is small -
            # Progressive pruning (section 7.4): every boundary gets the first rule (step
            # WOR_FAST_STEP) and a bracket whose half-width is the whole change from the rule of
            # twice the step (not its square: conservative); each halving is evaluated only at the
            # boundaries whose bracket can still be the minimum, end a bucket that can hold it, or be
            # the base of such a bucket, and prunes again with its own change.
            u_lo, u_hi = umap(WOR_T_LO), umap(T)
            h = WOR_FAST_STEP
            J = max(2, math.ceil((u_hi - u_lo) / h))
            nodes_s = u_lo + h * np.arange(J + 1)
            val, maj = bnd.integrand(*tmap(nodes_s), cache=coef_cache)
            coarse = np.ones(nodes_s.size, dtype=bool)
            Iv = h * val.sum(axis=1)
            Im = h * maj.sum(axis=1)
            It = h * bnd.last_tot.sum(axis=1)
            rel = rel_round
            g_base = Gerr + tail  # error terms that do not depend on the rule
            Pb0 = np.concatenate([[0.0], Pc[:-1]])
            lo_b = lo_all[occ] * bq
            ub = 1.0  # the empty set
            cand_c = np.ones(nb, dtype=bool)
            R = np.arange(nb)
            ub_row = -1

            def prune(R: np.ndarray, change: np.ndarray) -> np.ndarray:
                """Brackets of the rows ``R`` with quadrature error ``change``; returns the rows to
                refine and narrows ``cand_c`` (buckets that can hold the minimum) and ``ub``."""
                nonlocal ub, cand_c, ub_row
                Gr = G[R] + Iv[R]
                Ger = g_base[R] + change + rel * Iv[R] + n * (trunc + 64 * _EPS) * Im[R]
                Qr = np.clip(Sc[R] - lam[R] * Gr, 0.0, 1.0)
                er = lam[R] * Ger + sum_rel * (Sc[R] + lam[R] * Gr)
                fr_ = 1.0 + Pc[R] - Qr
                if R.size:
                    i_ub = int(np.argmin(fr_ + er))
                    if float(fr_[i_ub] + er[i_ub]) < ub:
                        ub, ub_row = float(fr_[i_ub] + er[i_ub]), int(R[i_ub])
                cm = np.zeros(nb, dtype=bool)
                cm[R] = (1.0 + Pb0[R] + lo_b[R] - (Qr + er)) <= ub - slack
                cand_c &= cm
                need = np.zeros(nb, dtype=bool)
                need[R] = fr_ - er <= ub - slack
                if ub_row >= 0:
                    need[ub_row] = True  # the boundary that sets ub stays (slack > 0)
                need |= cand_c
                need[:-1] |= cand_c[1:]
                return np.flatnonzero(need)

            qerr = np.abs(Iv - (2 * h) * val[:, ::2].sum(axis=1))  # each row's last error estimate
            R = prune(R, qerr)
            info["refined_boundaries"] = float(R.size)
            while True:
                mids = u_lo + h * (np.arange(J) + 0.5)
                v2, m2 = bnd.integrand(*tmap(mids), cache=coef_cache, rows=R)
                I_new = 0.5 * Iv[R] + (h / 2) * v2.sum(axis=1)
                Im[R] = 0.5 * Im[R] + (h / 2) * m2.sum(axis=1)
                It[R] = 0.5 * It[R] + (h / 2) * bnd.last_tot.sum(axis=1)
                dchange = np.abs(I_new - Iv[R])
                change = _quad_error(dchange, I_new)
                coarse = np.concatenate([np.ones(nodes_s.size, dtype=bool), np.zeros(mids.size, dtype=bool)])
                nodes_s = np.concatenate([nodes_s, mids])
                Iv[R] = I_new
                h /= 2
                J *= 2
                # (the error of Q is lambda times that of G: in the ring form G reaches 1/rho)
                gate = change
                if ring:
                    gate = np.multiply(change, lam[R], out=np.zeros_like(change), where=lam[R] > 0.0)
                if float(np.max(gate, initial=0.0)) <= WOR_FAST_CHANGE or h < WOR_FAST_MIN_STEP:
                    break
                qerr[R] = dchange
                Rn = prune(R, dchange)
                R = Rn[np.isin(Rn, R)]  # (prune only narrows R)
            info["quad_nodes"] = float(nodes_s.size)
            # Rounding estimate (moments, exp series and products; relative) + Taylor remainder
            # (n * tau * t, through the majorant Im) + quadrature change + tails. Rows outside R keep
            # their last bracket (they cannot hold the minimum).
            qerr[R] = change
            G = G + Iv
            Gerr = g_base + qerr + rel * Iv + n * (trunc + 64 * _EPS) * Im
    else:
        R = np.arange(nb)
        cand_c = np.ones(nb, dtype=bool)
    closed3 = closed is not None
    Q_end = np.clip(Sc - lam * G, 0.0, 1.0)
    with np.errstate(invalid="ignore"):  # (lambda = 0, G infinite at the full set: no error)
        err_end = np.where(lam > 0.0, lam * Gerr, 0.0) + sum_rel * (Sc + np.where(lam > 0.0, lam * G, 0.0))

    # --- 2. best boundary and candidate buckets ---------------------------------------------
    # Only the boundaries R compete (the others are above ub >= alpha*, section 7.4).
    fend = 1.0 + Pc - Q_end
    jb = int(R[np.argmin(fend[R])]) if R.size else 0
    if R.size and fend[jb] < 1.0:
        best, best_err, thr = float(fend[jb]), float(err_end[jb]), int(occ[jb]) + 1
    else:
        best, best_err, thr = 1.0, 0.0, 0
    Pb = np.concatenate([[0.0], Pc[:-1]])
    lb = 1.0 + Pb + lo_all[occ] * bq - (Q_end + err_end)
    # ring form: buckets that cannot beat the best boundary by more than WOR_FAST_RING_SLACK are
    # not evaluated (peaked rows put thousands of near-zero-mass tokens level with the best
    # value); the slack joins the error bound
    cand = np.flatnonzero((lb < best + best_err - slack) & cand_c)
    value, value_err, error = best, best_err, max(best_err, slack)
    n_eval = 0
    error = max(error, float(np.max(err_end[R], initial=0.0)))
    extra = np.zeros(0, dtype=np.intp)
    n_cand = 0
    idx = np.zeros(0, dtype=np.intp)
    if cand.size:
        cmask = np.zeros(M, dtype=bool)
        cmask[occ[cand]] = True
        # Tokens with q = 0 (ratio +inf, last on the chain) never lower the chain value: P grows
        # and Q stays, f(k) = f(k - 1) + p_k. They are not evaluated (a top-k draft puts almost
        # the whole vocabulary there).
        idx = np.flatnonzero(cmask[key] & (q > 0))
        need = 0.0
        if idx.size > WOR_FAST_LEVEL_MIN or cand.size > WOR_FAST_LEVEL_RUNS:
            # Thousands of candidate tokens or many candidate buckets: buckets of near-zero mass
            # level with the best value, within the error bars (a row whose optimum is the empty
            # set or nearly so, or masses spread over hundreds of orders of magnitude). Those
            # that cannot beat the best by more than the slack are not evaluated; the slack (at
            # least twice the error bars involved) joins the bound.
            need = max(WOR_FAST_LEVEL_SLACK, 2.0 * (best_err + float(np.max(err_end[cand]))))
        if slack < need <= 0.25 * WOR_FAST_MAX_ERROR:
            slack = need
            error = max(error, slack)
            cand = np.flatnonzero((lb < best + best_err - slack) & cand_c)
            cmask[:] = False
            cmask[occ[cand]] = True
            idx = np.flatnonzero(cmask[key] & (q > 0))
    if idx.size:
        n_cand = idx.size
        rc = r[idx]
        rc = np.where(q[idx] > 0, rc, np.inf)
        o = np.argsort(rc, kind="stable")
        idx = idx[o]
        kc = key[idx]
        pos_b = np.searchsorted(occ, kc)  # boundary index of each candidate token's bucket
        starts = np.flatnonzero(np.concatenate([[True], kc[1:] != kc[:-1]]))
        ends = np.concatenate([starts[1:], [idx.size]])
        if closed4 and bnd is not None:
            # boundaries in closed form: the quadrature runs only on the candidate buckets' bases
            # (their polynomials at the nodes carry the tokens, as in section 7.3)
            rows4 = np.unique(np.maximum(pos_b[starts] - 1, 0))
            nodes_s, coarse, h, Iv4, Im4 = _quad_rows(bnd, rows4, T, coef_cache)
            Iv[rows4] = Iv4
            Im[rows4] = Im4
            info["quad_nodes"] = float(nodes_s.size)
        t_nodes, jac_nodes = tmap(nodes_s)
        t_top = float(np.max(t_nodes, initial=T if n >= 3 else 0.0))  # last node: up to a step beyond T
        if n >= 3 and bnd is not None and not closed3:
            # polynomial of each candidate run's base set (the boundary before its bucket)
            bases = np.unique(np.maximum(pos_b[starts] - 1, 0))
            # the boundary coefficients of the quadrature passes, at all nodes (no recomputation;
            # every base of a candidate bucket is in R, the rows of the later passes)
            ir = [bases if c[2] is None else np.searchsorted(c[2], bases) for c in coef_cache]
            Bc_all = np.concatenate([c[0][:, i, :] for c, i in zip(coef_cache, ir, strict=True)], axis=2)
            S_all = np.concatenate([c[1][:, i, :] for c, i in zip(coef_cache, ir, strict=True)], axis=2)
        w_nodes = np.where(coarse, 2 * h, 0.0)  # weights of the coarser rule (error estimate)
        wexp = jac_nodes * np.exp(-t_nodes)
        wexp_run = wexp  # weight of the current run's base (ring form: per base, below)
        rel = rel_round if n >= 3 else 0.0

        n_t = n * (trunc + 64 * _EPS) if n >= 3 else 0.0

        def token_integrals(qs: np.ndarray, basec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """sum_{m>=2} G_m-part for every prefix of tokens ``qs`` on top of a base polynomial
            (coefficients ``(n, N)``), and its quadrature error estimate."""
            c = np.expm1(qs[:, None] * t_nodes[None, :])
            # sum_{m=2}^{n-1} [z^m](base * ext) = sum_b w_b ext_b, w_b = sum of base_a over
            # 2 - b <= a <= n - 1 - b (positive sums)
            wts = np.empty((n, t_nodes.size))
            for bb in range(n):
                wts[bb] = basec[max(0, 2 - bb) : n - bb].sum(axis=0)
            vals = _chain_sum(c, wts) * wexp_run[None, :]
            If = h * vals.sum(axis=1)
            return If, _quad_error(np.abs(If - vals @ w_nodes), If)

        def token_integrals_ring(
            qs: np.ndarray, lam_tok: np.ndarray, basec: np.ndarray, rb: float, qsb: float
        ) -> tuple[np.ndarray, np.ndarray]:
            """Ring form of :func:`token_integrals` (section 7.10) for a whole run: ``lam_tok`` is
            the mass after each token, ``rb`` the base's rate, ``qsb`` the base's small mass.
            Tokens go in chunks whose mass times ``T`` is at most ``WOR_FAST_RING_RUN_X / 2``
            (plain form inside a chunk, then multiplied by ``exp(-q(chunk) t)`` into the ring
            form, the rate becoming ``lam + qsb``: positive sums only); a token above that bound
            is one ring step ``(a + z b)``."""
            L, N = qs.size, t_nodes.size
            vals = np.empty((L, N))
            cur = basec
            rate = rb
            xs = qs * t_top
            cap = 0.5 * WOR_FAST_RING_RUN_X
            k = 0
            while k < L:
                if xs[k] > cap:
                    x = qs[k] * t_nodes
                    nxt = cur * np.exp(-x)[None, :]
                    nxt[1:] += -np.expm1(-x)[None, :] * cur[:-1]
                    cur = nxt
                    rate = float(lam_tok[k]) + qsb
                    vals[k] = cur[2:].sum(axis=0) * (jac_nodes * np.exp(-rate * t_nodes))
                    k += 1
                    continue
                e = k + max(1, int(np.searchsorted(np.cumsum(xs[k : k + 4096]), cap, side="right")))
                c = np.expm1(qs[k:e, None] * t_nodes[None, :])
                # sum_{m>=2}[z^m](cur * ext) = sum_b w_b ext_b (as token_integrals)
                wts = np.empty((n, N))
                for bb in range(n):
                    wts[bb] = cur[max(0, 2 - bb) : n - bb].sum(axis=0)
                vals[k:e] = _chain_sum(c, wts) * (jac_nodes * np.exp(-rate * t_nodes))[None, :]
                ext = np.empty((n, N))  # coefficients of the chunk's product (plain form)
                ext[0] = 1.0
                ext[1:] = 0.0
                for i in range(e - k):
                    ext[1:] += c[i][None, :] * ext[:-1]
                cur = _poly_mul(cur, ext, n) * np.exp(-float(np.sum(qs[k:e])) * t_nodes)[None, :]
                rate = float(lam_tok[e - 1]) + qsb
                k = e
            If = h * vals.sum(axis=1)
            return If, _quad_error(np.abs(If - vals @ w_nodes), If)

        def refine(
            a0: int,
            a1: int,
            basec: np.ndarray,
            fac: float,
            mb: int,
            depth: int,
            ctx: tuple,
            slices: list[tuple[int, int, np.ndarray | None, float]],
        ) -> None:
            """Split the tokens ``a0:a1`` of a candidate bucket (base polynomial ``basec``, relative
            error factor ``fac``) by a key ``WOR_FAST_SUB_BITS`` bits finer than ``mb``, evaluate the
            run ends, prune the runs (section 7.3) and recurse into the survivors, up to
            ``WOR_FAST_SUB_LEVELS`` levels; unsplit pieces go to ``slices`` (token by token)."""
            nonlocal value, value_err, thr, extra, error
            b, s0, ii, qr, Pk, Sk, lamk, Gk, Gek = ctx
            sub = None
            tie = False
            smin = WOR_FAST_SUB_MIN if depth == 0 else WOR_FAST_SUB_MIN_DEEP
            if a1 - a0 >= WOR_FAST_TIE_MIN and bool(np.all(qr[a0:a1] > 0)):
                # large tie groups (flat or quantised rows): evaluate only the groups' ends
                rr = r[ii[a0:a1]]
                if 1 + int(np.count_nonzero(rr[1:] != rr[:-1])) <= (a1 - a0) // 4:
                    sub = _sub_buckets(rr, qr[a0:a1], n, mb, q1, q2, t_nodes, ties=True, scale=mscale)
                    tie = True
            deeper = depth < WOR_FAST_SUB_LEVELS and mb < 23
            if sub is None and a1 - a0 >= smin and deeper and bool(np.all(qr[a0:a1] > 0)):
                sub = _sub_buckets(r[ii[a0:a1]], qr[a0:a1], n, mb, q1, q2, t_nodes, scale=mscale)
            if sub is None:
                slices.append((a0, a1, basec, fac))
                return
            # --- a finer level: boundaries of finer buckets inside this run ---------------------
            sends_l, lo_sub, prodc, p1fac = sub
            sends = a0 + sends_l
            full = _poly_mul(np.broadcast_to(basec[:, None, :], prodc.shape), prodc, n)
            # sum_{m>=2}[z^m] of the full polynomial at each sub-boundary
            vsub = full[2:].sum(axis=0) * wexp_run[None, :]
            Isub = h * vsub.sum(axis=1)
            qsub = _quad_error(np.abs(Isub - vsub @ w_nodes), Isub)
            msub = h * (full.sum(axis=0) * p1fac * wexp_run[None, :]).sum(axis=1)
            fsub = fac + float(np.max(msub / np.maximum(Isub, 1e-300)))
            Ge = Gk[sends] + Isub
            Gee = Gek[sends] + qsub + tail + (rel + n * (trunc + 64 * _EPS) * fsub) * Isub
            Qs = np.clip(Sk[sends] - lamk[sends] * Ge, 0.0, 1.0)
            es = lamk[sends] * Gee + sum_rel * (Sk[sends] + lamk[sends] * Ge)
            fs = 1.0 + Pk[sends] - Qs
            error = max(error, float(np.max(es)))
            if not (np.all(np.isfinite(fs)) and np.all(np.isfinite(es))):
                raise _NonFinite
            isb = int(np.argmin(fs))
            if fs[isb] < value:
                value, value_err = float(fs[isb]), float(es[isb])
                thr = int(occ[b])
                extra = idx[s0 : s0 + int(sends[isb]) + 1]
            if tie:
                info["tie_groups"] = info.get("tie_groups", 0.0) + float(sends.size)
                return  # the chain is concave inside each tie group: its ends were evaluated
            # pruning inside the run, exactly as at the first level
            sstarts = np.concatenate([[a0], sends[:-1] + 1])
            P0 = Pc[b - 1] if b > 0 else 0.0
            Pbs = np.where(sstarts > 0, Pk[np.maximum(sstarts - 1, 0)], P0)
            qsum = np.add.reduceat(qr[a0:a1], sstarts - a0)
            lbs = 1.0 + Pbs + lo_sub * qsum - (Qs + es)
            info["sub_buckets"] = info.get("sub_buckets", 0.0) + float(sends.size)
            for s_ in np.flatnonzero(lbs < value + value_err):
                bc = basec if s_ == 0 else full[:, s_ - 1, :]
                refine(
                    int(sstarts[s_]),
                    int(sends[s_]) + 1,
                    bc,
                    fsub,
                    min(23, mb + WOR_FAST_SUB_BITS),
                    depth + 1,
                    ctx,
                    slices,
                )

        for s0, s1 in zip(starts, ends, strict=True):
            b = int(pos_b[s0])
            ii = idx[s0:s1]
            pr, qr = p[ii], q[ii]
            ring_run = False
            rb = qsb = 0.0
            if ring and bnd is not None:
                # ring form: the base polynomial is scaled by exp(-q_big(base) t), so the weight
                # is exp(-rate(base) t); a run of small total mass keeps its tokens in the plain
                # form (sub-buckets, ties), a heavier one goes through token_integrals_ring
                rb = float(bnd.rate[b - 1]) if b > 0 and bnd.rate is not None else tot
                qsb = float(qs_bnd[b - 1]) if b > 0 else 0.0
                wexp_run = jac_nodes * np.exp(-rb * t_nodes)
                ring_run = float(np.sum(qr)) * t_top > WOR_FAST_RING_RUN_X
            ar = _odds(q, ii, tot)
            Pk = (Pc[b - 1] if b > 0 else 0.0) + np.cumsum(pr)
            Sk = (Sc[b - 1] if b > 0 else 0.0) + np.cumsum(qr)
            lamk = lam[b] + _suffix_after(qr)
            Gk = (Ac[b - 1] if b > 0 else 0.0) + np.cumsum(ar)
            # (the base's G_1 carries the truncation of its moment series, section 7.2)
            Gek = 8 * _EPS * Gk + (g1_rel * Ac[b - 1] if b > 0 else 0.0)
            L = ii.size
            # (start, stop, base coefficients or None, relative error factor) of the token slices
            slices: list[tuple[int, int, np.ndarray | None, float]] = []
            if closed3:
                # n = 3 in closed form: G_2 along the run by exact increments (section 7.7)
                xr = qr
                rxr = 1.0 - qr
                tier = np.where(qr >= q2, -1, np.where(qr < q1, 0, 1))
                nb0 = int(big_cnt[b - 1]) if b > 0 else 0
                Mbase = [M[b - 1] if b > 0 else np.zeros(M.shape[1]) for M in Ms3]
                inc = _closed3_tokens(
                    xr, rxr, tier, Mbase, us3, xb[:nb0], rxb[:nb0], gcum3[nb0], [c[nb0] for c in ccum3]
                )
                if inc is None:
                    return None
                G2k = (G2b[b - 1] if b > 0 else 0.0) + np.cumsum(inc[0])
                Gk = Gk + G2k
                Gek = Gek + (e2 + 16 * _EPS * G2b[b - 1] if b > 0 else 0.0) + np.cumsum(inc[1])
                Gek += 16 * _EPS * G2k
                slices.append((0, L, None, 0.0))
            elif n < 3 or bnd is None:
                slices.append((0, L, None, 0.0))
            else:
                if b > 0:
                    ib = int(np.searchsorted(bases, b - 1))
                    basec = _poly_mul(Bc_all[:, ib, :], S_all[:, ib, :], n)
                    # the base polynomial carries the boundary's relative Taylor/rounding error
                    if ring and It.size:
                        # relative factor of the base's coefficients, all degrees (Im / Iv
                        # blows up when the degree >= 2 part is tiny next to degrees 0, 1)
                        fac = float(Im[b - 1] / It[b - 1]) if It[b - 1] > 0 else 0.0
                    else:
                        fac = float(Im[b - 1] / Iv[b - 1]) if Iv[b - 1] > 0 else 0.0
                else:
                    basec = np.zeros((n, t_nodes.size))
                    basec[0] = 1.0
                    fac = 0.0
                if ring_run:
                    slices.append((0, L, basec, fac))
                else:
                    try:
                        refine(0, L, basec, fac, m_bits, 0, (b, s0, ii, qr, Pk, Sk, lamk, Gk, Gek), slices)
                    except _NonFinite:
                        return None
            chain = (Pk, Sk, lamk, Gk, Gek)
            for a0, a1, bc, fc in slices:
                n_eval += a1 - a0
                if bc is None:  # n = 2: closed form
                    fk, ek = _token_values(chain, a0, a1, None, None, 0.0, 0.0, sum_rel)
                else:
                    if ring_run:
                        If, qe = token_integrals_ring(qr, lamk, bc, rb, qsb)
                    else:
                        If, qe = token_integrals(qr[a0:a1], bc)
                    fk, ek = _token_values(chain, a0, a1, If, qe, tail, rel + n_t * fc, sum_rel)
                if not (np.all(np.isfinite(fk)) and np.all(np.isfinite(ek))):
                    return None  # (a safety net: a value that overflowed is never dropped silently)
                i = int(np.argmin(fk))
                error = max(error, float(np.max(ek)))
                if fk[i] < value:
                    value, value_err = float(fk[i]), float(ek[i])
                    thr = int(occ[b])
                    extra = idx[s0 : s0 + a0 + i + 1]
    if not error <= WOR_FAST_MAX_ERROR:
        return None  # cannot vouch for the accuracy: the caller uses the reference evaluator
    mask = key < thr
    if extra.size:
        mask[extra] = True
    info["candidate_tokens"] = float(n_cand)
    info["candidate_buckets"] = float(cand.size)
    info["slack"] = slack
    info["evaluated_tokens"] = float(n_eval)
    return WorFast(value=value, mask=mask, error=error, info=info)
