r"""Fast exact :math:`\alpha^*` for i.i.d. drafts: bucket the ratio order, sort only what can win.

For :math:`n` i.i.d. drafts from :math:`q`, the sorted-prefix theorem (Hu et al., arXiv 2502.18779;
proof in ``docs/theory.md``) gives

.. math::

    \alpha^* = \min_{0 \le k \le V} f(k), \qquad f(k) = 1 + P_k - S_k^n,

where tokens are sorted by :math:`r(y) = p(y)/q(y)` ascending (:math:`q(y) = 0` last) and
:math:`P_k, S_k` are the prefix sums of :math:`p` and :math:`q`. The plain algorithm
(:func:`prefix_iid_reference`) sorts all :math:`V` ratios. :func:`prefix_iid_fast` returns the same
value without a full sort:

1. **Monotone bucket key.** :math:`\kappa(y)` = the top :math:`9 + m` bits of the IEEE-754
   pattern of :math:`\mathrm{fl}_{32}(r(y))` (sign, 8 exponent bits, :math:`m` mantissa bits).
   Rounding to float32 is monotone and the bit pattern of a non-negative float is
   order-preserving, so :math:`r(a) < r(b) \Rightarrow \kappa(a) \le \kappa(b)`, equivalently
   :math:`\kappa(a) < \kappa(b) \Rightarrow r(a) < r(b)` (compared in float64). Ordering by
   :math:`(\kappa, r)` *is* ordering by :math:`r`: bucket boundaries are points of the exact chain.
   The float32 key only groups; comparisons inside a bucket use the float64 ratio.
2. **Bucket sums.** :math:`p_j, q_j` = masses of bucket :math:`j` (``np.bincount``), their
   cumulative sums give :math:`f` exactly at every bucket boundary; let :math:`f^\star` be the
   best boundary value (the empty set, value 1, included).
3. **Pruning bound.** Every token of bucket :math:`j` has :math:`r(y) \ge \ell_j` (the smallest
   float64 that can round into the bucket), so inside the bucket
   :math:`\Delta P \ge \ell_j \Delta S`; and
   :math:`\Delta \mapsto 1 + P_{<j} + \ell_j\Delta - (S_{<j} + \Delta)^n` is concave, so

   .. math::

       f(k) \ge \min\bigl(f(\text{start of } j),\; 1 + P_{<j} + \ell_j q_j - S_{\le j}^n\bigr)
       \quad\text{for every } k \text{ inside bucket } j .

   The first term is a boundary value (:math:`\ge f^\star`). Only buckets whose second term is below
   :math:`f^\star` can hold a better prefix; their tokens (a small fraction of the vocabulary on
   language-model-like pairs, see ``benchmarks/bench_core.py``) are sorted by float64 ratio and the
   chain is evaluated inside them.
   With :math:`\ell_j = 0` this is the bound :math:`1 + P_{<j} - S_{\le j}^n` of the issue; the
   :math:`\ell_j q_j` term makes it tight to the bucket width.

The answer is the full-sort answer up to floating-point summation order (the prefix sums are
accumulated in a different order): same minimum, and a witness set :math:`H^*` whose subset value
is the returned value. Ties in :math:`r` do not matter: inside a tie group :math:`f` is concave in
:math:`S` (linear minus convex), so its minimum over the group sits at the group's ends, whatever
the order inside.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "FAST_MIN_V",
    "bucket_mantissa_bits",
    "prefix_iid_fast",
    "prefix_iid_reference",
]

#: Below this vocabulary size the plain full sort is as fast as the bucketed path; use it.
FAST_MIN_V: int = 2048

#: Candidate sets at least this large are checked for buckets of a single ratio (tie groups),
#: which need no sort.
TIE_CHECK_MIN: int = 1024

#: Largest float32 (the lower bound of the bucket that holds ``+inf``).
_FLT_MAX: float = float(np.finfo(np.float32).max)

#: Relative safety factor of a bucket's lower bound: a float64 that rounds to a normal float32
#: :math:`x \ge L` is at least :math:`L(1 - 2^{-24})`.
_LOWER_FACTOR: float = 1.0 - 2.0**-23


def bucket_mantissa_bits(V: int) -> int:
    """Number ``m`` of float32 mantissa bits in the bucket key for vocabulary size ``V``.

    ``2**(8 + m)`` buckets per row (all float32 exponents): about ``V / 8``, between ``2**11`` and
    ``2**15`` (tuned with ``benchmarks/bench_core.py``). Only the exponents the ratios use are
    occupied.
    """
    return int(min(7, max(3, int(V).bit_length() - 12)))


@functools.lru_cache(maxsize=16)
def _bucket_lower(m: int) -> np.ndarray:
    r"""Lower bound :math:`\ell_j` of the float64 ratios in bucket ``j`` (key of ``m`` bits).

    Bucket ``j`` holds the float32 patterns starting at ``j << (23 - m)``; a float64 rounding to a
    float32 :math:`x \ge L` (normal :math:`L`) is :math:`\ge L(1 - 2^{-24})`. Buckets of subnormal
    float32 (or zero) get 0; the buckets of exponent 255 (``inf``, ``nan``) get
    :math:`\mathrm{FLT\_MAX}(1 - 2^{-23})`.
    """
    M = 1 << (8 + m)
    starts = (np.arange(M, dtype=np.uint32) << np.uint32(23 - m)).view(np.float32)
    with np.errstate(invalid="ignore"):
        lo = starts.astype(np.float64) * _LOWER_FACTOR
    expo = np.arange(M) >> m
    lo[expo == 0] = 0.0
    lo[expo == 255] = _FLT_MAX * _LOWER_FACTOR
    lo.flags.writeable = False
    return lo


def _ratio(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``p/q`` with ``q <= 0`` (zero) mapped to ``+inf``, as in the reference order."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(q > 0, p / np.where(q > 0, q, 1.0), np.inf)


def prefix_iid_reference(
    p: np.ndarray, q: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    r"""Plain sorted-prefix :math:`\alpha^*` for i.i.d. drafts (full stable sort; the reference).

    Parameters
    ----------
    p, q
        ``(B, V)`` float64 target and draft rows (validated distributions).
    n
        Number of i.i.d. drafts.

    Returns
    -------
    value, mask
        :math:`\alpha^* = \min_k [1 + P_k - S_k^n]` per row ``(B,)`` and the witness prefix
        :math:`H^*` as a boolean mask ``(B, V)`` (``k = 0``, the empty set, on ties).
    """
    B, V = p.shape
    order = np.argsort(_ratio(p, q), axis=-1, kind="stable")
    P = np.cumsum(np.take_along_axis(p, order, axis=1), axis=1)
    S = np.cumsum(np.take_along_axis(q, order, axis=1), axis=1)
    full = np.concatenate([np.ones((B, 1)), 1.0 + P - np.minimum(S, 1.0) ** n], axis=1)
    k = np.argmin(full, axis=1)
    value = full[np.arange(B), k]
    mask = np.zeros((B, V), dtype=bool)
    np.put_along_axis(mask, order, np.arange(V)[None, :] < k[:, None], axis=1)
    return value, mask


#: Rows whose draft has at most ``V // IID_SMALL_SUPPORT_DIV`` positive entries (top-k drafts,
#: n-gram drafts) run the reference on those entries only (:func:`_iid_small_support`).
IID_SMALL_SUPPORT_DIV: int = 32


def _iid_small_support(
    p: np.ndarray, q: np.ndarray, n: int, pos: np.ndarray | None = None
) -> tuple[float, np.ndarray] | None:
    r"""The reference chain on the positive entries of ``q`` only (one row), or ``None``.

    Tokens with :math:`q = 0` come last in the stable ratio order (ratio :math:`+\infty`) and
    leave :math:`S` unchanged (adding 0.0 is exact) while :math:`P` cannot decrease, so the first
    minimiser of the reference chain is a prefix of the positive-:math:`q` tokens, which come in
    the reference order when sorted stably by their own ratios: value and witness are bitwise the
    reference's. Rows where a positive-:math:`q` ratio overflows to :math:`+\infty` (tied with
    the zeros in the reference order) are left to the caller. Cost :math:`O(V + K \log K)`.
    """
    if pos is None:
        pos = np.flatnonzero(q > 0)
    with np.errstate(over="ignore"):
        r = p[pos] / q[pos]
    if not bool(np.all(np.isfinite(r))):
        return None
    o = pos[np.argsort(r, kind="stable")]
    full = np.concatenate([[1.0], 1.0 + np.cumsum(p[o]) - np.minimum(np.cumsum(q[o]), 1.0) ** n])
    k = int(np.argmin(full))
    mask = np.zeros(p.size, dtype=bool)
    mask[o[:k]] = True
    return float(full[k]), mask


#: Scale of the bucket sums of rows with zero or subnormal entries (a power of two: exact).
_SUM_SCALE: float = 2.0**600


def _bucket_sums(key: np.ndarray, w: np.ndarray, size: int) -> np.ndarray:
    """``np.bincount(key, weights=w, minlength=size)``; for rows with zero or subnormal weights the
    weights are scaled by ``2**600`` first and the sums scaled back (both exact): adding zeros to a
    subnormal running sum takes the CPU's slow path for every addition (a temperature-0.01 draft
    at V = 256k: 21 ms for this one ``bincount``)."""
    if float(np.min(w, initial=1.0)) >= 2.3e-308:
        return np.bincount(key, weights=w, minlength=size)
    return np.bincount(key, weights=w * _SUM_SCALE, minlength=size) * (1.0 / _SUM_SCALE)


def _row_cumsum(x: np.ndarray, rows: np.ndarray, col: np.ndarray, B: int) -> np.ndarray:
    """Cumulative sums of ``x`` restarted at each row (``rows`` sorted, ``col`` = rank in row)."""
    pad = np.zeros((B, int(col.max()) + 1))
    pad[rows, col] = x
    return np.cumsum(pad, axis=1)[rows, col]


def _select_rows(
    vals: np.ndarray,
    g: np.ndarray,
    idx: np.ndarray,
    run: np.ndarray,
    M: int,
    best: np.ndarray,
    value: np.ndarray,
    thr: np.ndarray,
) -> np.ndarray:
    """Batch case: per row, the best candidate prefix if it beats the best boundary.

    Updates ``value`` and ``thr`` in place for the winning rows and returns the flat indices of the
    candidate tokens that join the witness (those of the winning bucket up to the minimiser).
    """
    B = best.shape[0]
    rows = g // M
    cbest = np.full(B, np.inf)
    np.minimum.at(cbest, rows, vals)
    win = cbest < best
    if not np.any(win):
        return np.zeros(0, dtype=np.intp)
    hit = np.flatnonzero((vals == cbest[rows]) & win[rows])
    wrows, first = np.unique(rows[hit], return_index=True)
    pos = hit[first]  # first minimiser of each winning row
    value[wrows] = vals[pos]
    thr[wrows] = g[pos] - wrows * M
    posrow = np.full(B, -1, dtype=np.intp)
    runrow = np.full(B, -1, dtype=np.intp)
    posrow[wrows] = pos
    runrow[wrows] = run[pos]
    k = np.arange(idx.size)
    sel = (run == runrow[rows]) & (k <= posrow[rows])
    return idx[sel]


def prefix_iid_fast(
    p: np.ndarray,
    q: np.ndarray,
    n: int,
    *,
    mantissa_bits: int | None = None,
    min_v: int = FAST_MIN_V,
    stats: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact :math:`\alpha^*` and witness for i.i.d. drafts, sorting only the candidate buckets.

    Same contract as :func:`prefix_iid_reference` (the module docstring has the algorithm and its
    proof of exactness).

    Parameters
    ----------
    p, q
        ``(B, V)`` float64 target and draft rows (validated distributions; ``q`` may be a broadcast
        view).
    n
        Number of i.i.d. drafts (``>= 1``).
    mantissa_bits
        Float32 mantissa bits in the bucket key (default :func:`bucket_mantissa_bits`).
    min_v
        Vocabulary sizes below this use :func:`prefix_iid_reference`.
    stats
        If a dict is given, it receives ``"sorted_fraction"`` (tokens sorted / tokens) and
        ``"candidate_buckets"`` (total over the batch).

    Returns
    -------
    value, mask
        ``(B,)`` values and ``(B, V)`` boolean witness masks.
    """
    B, V = p.shape
    if V < min_v:
        if stats is not None:
            stats["sorted_fraction"] = 1.0
            stats["candidate_buckets"] = float(B)
        return prefix_iid_reference(p, q, n)
    m = bucket_mantissa_bits(V) if mantissa_bits is None else int(mantissa_bits)
    if not 0 <= m <= 23:
        raise ValueError(f"argument 'mantissa_bits': must be in 0..23, got {m}")
    qb = np.broadcast_to(q, p.shape)
    posm = qb > 0
    small = np.flatnonzero(np.count_nonzero(posm, axis=1) <= V // IID_SMALL_SUPPORT_DIV)
    if small.size:
        value = np.empty(B)
        mask = np.zeros((B, V), dtype=bool)
        done = np.zeros(B, dtype=bool)
        for b in small:
            res = _iid_small_support(p[b], qb[b], n, np.flatnonzero(posm[b]))
            if res is not None:
                value[b], mask[b] = res
                done[b] = True
        if done.any():
            rest = np.flatnonzero(~done)
            if rest.size:
                v2, m2 = prefix_iid_fast(
                    p[rest], qb[rest], n, mantissa_bits=m, min_v=min_v, stats=stats
                )
                value[rest] = v2
                mask[rest] = m2
            elif stats is not None:
                stats["sorted_fraction"] = 0.0
                stats["candidate_buckets"] = 0.0
            return value, mask
    M = 1 << (8 + m)
    lo = _bucket_lower(m)

    # 1. Bucket keys. q = 0 gives +-inf or nan (0/0); masking the sign bit sends them to the
    #    exponent-255 buckets (after every finite ratio) and -0.0 to bucket 0.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = p / q
        bits = r.astype(np.float32).view(np.uint32) >> np.uint32(23 - m)
    key = (bits & np.uint32(M - 1)).astype(np.intp)
    gkey = key.ravel() if B == 1 else (key + (np.arange(B, dtype=np.intp) * M)[:, None]).ravel()
    pf = np.ascontiguousarray(p).ravel()
    qf = np.ascontiguousarray(np.broadcast_to(q, p.shape)).ravel()

    # 2. Bucket sums and the chain at bucket ends.
    bp = _bucket_sums(gkey, pf, B * M).reshape(B, M)
    bq = _bucket_sums(gkey, qf, B * M).reshape(B, M)
    Pc = np.cumsum(bp, axis=1)
    Sc = np.cumsum(bq, axis=1)
    # (masses whose power would underflow are set to 0 first: libm's pow takes a slow path for
    # underflowing results, 30 ms per row at V = 256k for a temperature-0.01 draft; S^n below
    # 1e-300, or S below 1e-18, cannot change 1 + P - S^n >= 1 in float64)
    Sm = np.minimum(Sc, 1.0)
    Sn = np.where(Sm > max(1e-18, 10.0 ** (-300.0 / n)), Sm, 0.0) ** n
    fend = 1.0 + Pc - Sn
    jbest = np.argmin(fend, axis=1)
    fbnd = fend[np.arange(B), jbest]
    best = np.minimum(fbnd, 1.0)

    # 3. Candidate buckets: lower bound of the chain inside the bucket below the best boundary.
    Pb = np.empty_like(Pc)
    Pb[:, 0] = 0.0
    Pb[:, 1:] = Pc[:, :-1]
    cand = (1.0 + Pb + lo[None, :] * bq - Sn) < best[:, None]

    value = best.copy()
    thr = np.where(fbnd < 1.0, jbest + 1, 0)  # witness = tokens with key < thr (per row)
    extra = np.zeros(0, dtype=np.intp)
    n_cand = 0
    ncb = int(np.count_nonzero(cand))
    idx = np.zeros(0, dtype=np.intp)
    if ncb:
        idx = np.flatnonzero(cand.ravel()[gkey])
        n_cand = idx.size
        if idx.size >= TIE_CHECK_MIN:
            # Buckets whose tokens all share one float64 ratio (ties: flat or quantised rows)
            # need no sort: inside a tie group f is concave, its minimum sits at the group's
            # ends, which are bucket boundaries (already in `best`).
            g0 = gkey[idx]
            r0 = _ratio(pf[idx], qf[idx])
            rep = np.empty(B * M)
            rep[g0] = r0
            diff = np.bincount(g0, weights=(r0 != rep[g0]), minlength=B * M)
            idx = idx[diff[g0] > 0]
            n_cand = idx.size
    if idx.size:
        g = gkey[idx]
        pc = pf[idx]
        qc = qf[idx]
        rc = _ratio(pc, qc)
        o = np.argsort(rc, kind="stable") if B == 1 else np.lexsort((rc, g))
        idx, g, pc, qc = idx[o], g[o], pc[o], qc[o]
        new = np.empty(idx.size, dtype=bool)
        new[0] = True
        np.not_equal(g[1:], g[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        run = np.cumsum(new) - 1
        # Running sums inside each row (a padded (B, C) layout keeps rows independent, so a row's
        # answer is bitwise the same alone or in a batch), then relative to the run's start.
        rows = g // M
        counts = np.bincount(rows, minlength=B)
        col = np.arange(idx.size) - (np.cumsum(counts) - counts)[rows]
        cp = _row_cumsum(pc, rows, col, B)
        cq = _row_cumsum(qc, rows, col, B)
        first = col[starts] == 0
        basep = np.where(first, 0.0, cp[np.maximum(starts - 1, 0)])
        baseq = np.where(first, 0.0, cq[np.maximum(starts - 1, 0)])
        Pb_f = Pb.ravel()
        Sb = np.empty_like(Sc)
        Sb[:, 0] = 0.0
        Sb[:, 1:] = Sc[:, :-1]
        Sb_f = Sb.ravel()
        P = Pb_f[g] + (cp - basep[run])
        S = Sb_f[g] + (cq - baseq[run])
        vals = 1.0 + P - np.minimum(S, 1.0) ** n
        if B == 1:
            i = int(np.argmin(vals))
            if vals[i] < best[0]:
                value[0] = vals[i]
                thr[0] = g[i]
                extra = idx[starts[run[i]] : i + 1]
        else:
            extra = _select_rows(vals, g, idx, run, M, best, value, thr)

    mask = key < thr[:, None]
    if extra.size:
        mask.ravel()[extra] = True
    if stats is not None:
        stats["sorted_fraction"] = n_cand / float(B * V)
        stats["candidate_buckets"] = float(ncb)
    return value, mask
