r"""Glue between :func:`spectheory.optimal_acceptance` and the jit-compiled core.

* **Precision.** ``dtype="float64"`` (default) runs the core with 64-bit types enabled *locally*
  (the ``jax.enable_x64`` context manager, or ``jax.experimental.enable_x64`` on older JAX), so the
  caller's global JAX configuration is untouched; ``dtype="float32"`` casts the validated inputs to
  float32 and uses compensated prefix sums (``docs/jax.md`` gives the measured error bound).
* **Memory.** The batch is processed in chunks of ``chunk_rows`` rows (default: as many as fit in
  ``max_chunk_bytes`` of working memory, :data:`CHUNK_BYTES`). The last chunk is padded to the same
  shape so the core compiles once.
* **Devices.** With more than one local device (or ``shard=True``) every chunk is split over the
  devices along the batch axis (:mod:`.sharding`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ...result import Result, Status
from ...schemes import IID, Greedy, Hub, Independent, Scheme, WithoutReplacement
from ...tolerances import CERT_GAP_TOL
from . import core
from .sharding import batch_sharding

__all__ = [
    "CHUNK_BYTES",
    "FLOAT32_ERROR_BOUND",
    "FLOAT32_IID_ERROR_BOUND",
    "WORK_ARRAYS",
    "solve_lovasz",
    "solve_prefix",
    "x64",
]

#: Default working-memory budget of one chunk on the device (bytes).
CHUNK_BYTES: int = 1 << 30

#: Approximate number of ``(rows, V)`` working arrays the prefix core keeps alive (sort operands,
#: sorted copies, double-float prefix sums, mask): used to size chunks.
WORK_ARRAYS: int = 16

#: Documented bound on ``|alpha*_float32 - alpha*_float64|`` for the float32 prefix path (same
#: float32 inputs, numpy float64 reference), measured up to V = 256k and n <= 8 with compensated
#: prefix sums (largest observed 4.1e-7 at n = 8, V = 256k; ``docs/jax.md``).
FLOAT32_ERROR_BOUND: float = 1e-6

#: Documented bound for i.i.d. drafts in float32 (sort and sort-free paths): the chain
#: :math:`1 + P - S^n` is evaluated in double-word arithmetic from compensated prefix sums
#: (:func:`.core.chain_value_precise`), leaving about one final float32 rounding; largest
#: observed 5.7e-8 at V = 256k, n in 1..16 (CPU; ``docs/jax.md``). The issue's 1e-7 goal.
FLOAT32_IID_ERROR_BOUND: float = 1e-7


@contextlib.contextmanager
def x64(enabled: bool = True) -> Iterator[None]:
    """Enable (or disable) 64-bit JAX types inside the block only."""
    ctx = getattr(jax, "enable_x64", None)
    if ctx is not None:
        with ctx(enabled):
            yield
        return
    from jax import experimental  # pragma: no cover - older JAX

    cm = experimental.enable_x64 if enabled else experimental.disable_x64  # pragma: no cover
    with cm():  # pragma: no cover
        yield


def _dtype(dtype: Any) -> np.dtype:
    dt = np.dtype("float64" if dtype is None else dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"argument 'dtype': expected float32 or float64, got {dt}")
    return dt


def _rows(p: np.ndarray, scheme: Scheme) -> tuple[np.ndarray, int, bool]:
    single = p.ndim == 1 and not scheme.is_batched
    B = p.shape[0] if p.ndim == 2 else (scheme.batch_shape[0] if scheme.is_batched else 1)
    return np.broadcast_to(p, (B, p.shape[-1])), B, single


def _chunk_rows(
    B: int,
    V: int,
    itemsize: int,
    chunk_rows: int | None,
    max_chunk_bytes: int,
    ndev: int,
    row_elements: int | None = None,
) -> int:
    if chunk_rows is not None:
        if isinstance(chunk_rows, bool) or int(chunk_rows) < 1:
            raise ValueError(f"argument 'chunk_rows': must be a positive integer, got {chunk_rows}")
        rows = int(chunk_rows)
    else:
        per_row = V * WORK_ARRAYS if row_elements is None else max(row_elements, V * WORK_ARRAYS)
        rows = max(1, int(max_chunk_bytes) // max(1, per_row * itemsize))
    rows = min(rows, B)
    return int(math.ceil(rows / ndev) * ndev)


def _run_chunked(
    fn: Callable[..., tuple[Any, ...]],
    arrays: list[np.ndarray],
    B: int,
    rows: int,
    sharding: Any,
) -> tuple[list[np.ndarray], int]:
    """Apply ``fn`` to row chunks of ``arrays`` (batch on axis 0), padded to ``rows`` rows."""
    outs: list[list[np.ndarray]] = []
    nchunks = 0
    for start in range(0, B, rows):
        stop = min(start + rows, B)
        chunk = []
        for a in arrays:
            c = a[start:stop]
            if stop - start < rows:
                pad = np.broadcast_to(c[:1], (rows - (stop - start), *c.shape[1:]))
                c = np.concatenate([c, pad], axis=0)
            c = np.ascontiguousarray(c)
            chunk.append(
                jax.device_put(c, batch_sharding(sharding, c.ndim)) if sharding else jnp.asarray(c)
            )
        res = jax.block_until_ready(fn(*chunk))
        outs.append([np.asarray(r)[: stop - start] for r in res])
        nchunks += 1
    return [np.concatenate(parts, axis=0) for parts in zip(*outs, strict=True)], nchunks


def _devices(shard: bool | None, devices: Any) -> list[Any] | None:
    devs = list(jax.local_devices() if devices is None else devices)
    if shard is None:
        shard = len(devs) > 1
    return devs if shard else None


def _wor_retry(
    p2: np.ndarray,
    q2: np.ndarray,
    n: int,
    rows: list[int],
    dt: np.dtype,
    compensated: bool | None,
    value: np.ndarray,
    mask: np.ndarray,
    outs: list[np.ndarray],
    return_order: bool,
    max_chunk_bytes: int = CHUNK_BYTES,
) -> tuple[list[int], float]:
    """Second device pass over ``rows`` (outside the default contract of the fast path, mostly
    peaked drafts) with :data:`.wor_moments.WOR_FAST_RETRY` (longer range, more nodes). Rows it
    vouches for are written into ``value``, ``mask``, ``outs``; returns the rows still outside
    and the largest estimate of those taken. Rows go in chunks within ``max_chunk_bytes`` (by
    :func:`.wor_moments.work_elements`), each padded to a power of two (repeating its first row)
    so that few shapes are compiled."""
    from .wor_moments import WOR_FAST_RETRY, alpha_wor_fast, work_elements

    if not rows:
        return [], 0.0
    V = p2.shape[1]
    per_row = work_elements(V, n, retry=True) * dt.itemsize
    cap = max(1, max_chunk_bytes // max(1, per_row))
    cap = 1 << (cap.bit_length() - 1)  # a power of two: few compiled shapes
    tol = core.WOR_FAST_TOL if dt == np.float64 else core.WOR_FAST_TOL32
    parts: list[tuple[np.ndarray, ...]] = []
    for start in range(0, len(rows), cap):
        chunk = rows[start : start + cap]
        m = min(cap, 1 << (len(chunk) - 1).bit_length())
        idx = np.array(chunk + [chunk[0]] * (m - len(chunk)))
        with x64(dt == np.float64):
            pj = jnp.asarray(p2[idx].astype(dt))
            qj = jnp.asarray(q2[idx].astype(dt))
            wf = alpha_wor_fast(pj, qj, n, compensated, **WOR_FAST_RETRY)
            mk = core.prefix_mask(wf.order, wf.k)
            got = tuple(np.asarray(x)[: len(chunk)] for x in (wf.value, wf.error, wf.k, wf.order, mk))
        parts.append(got)
    v, e, k, o, mk = (np.concatenate(xs, axis=0) for xs in zip(*parts, strict=True))
    still: list[int] = []
    worst = 0.0
    for i, b in enumerate(rows):
        err = float(e[i])
        if not err <= tol:
            still.append(b)
            continue
        worst = max(worst, err)
        value[b] = v[i]
        mask[b] = mk[i]
        outs[2][b] = k[i]
        if return_order:
            outs[3][b] = o[i]
    return still, worst


def _wor_fallback(
    p2: np.ndarray,
    q2: np.ndarray,
    n: int,
    rows: list[int],
    value: np.ndarray,
    mask: np.ndarray,
    outs: list[np.ndarray],
    return_order: bool,
) -> float:
    """Recompute ``rows`` (outside the JAX fast path's accuracy contract) with the numpy path
    (:func:`spectheory.solvers.prefix._prefix_wor`: bucketed fast path, else the reference chain,
    which deflates the largest token). Updates ``value``, ``mask`` and ``outs`` in place; returns
    the numpy error bound of those rows."""
    from ..prefix import _prefix_wor, prefix_order

    if not rows:
        return 0.0
    info: dict[str, object] = {}
    v, m = _prefix_wor(p2[rows], q2[rows], n, info)
    for i, b in enumerate(rows):
        value[b] = v[i]
        mask[b] = m[i]
        outs[2][b] = int(m[i].sum())
        if return_order:
            outs[3][b] = prefix_order(p2[b : b + 1], q2[b : b + 1])[0]
    return float(info.get("error_bound", 0.0))


def solve_prefix(
    p: np.ndarray,
    scheme: Scheme,
    *,
    dtype: Any = None,
    chunk_rows: int | None = None,
    max_chunk_bytes: int = CHUNK_BYTES,
    shard: bool | None = None,
    devices: Any = None,
    return_order: bool = False,
    compensated: bool | None = None,
    iid_method: str = "auto",
) -> Result:
    r"""Batched :math:`\alpha^*` for IID, Greedy, Hub and WithoutReplacement (any ``n``) on JAX.

    Without replacement with ``n >= 3``: :func:`.wor_moments.alpha_wor_fast` with an error
    estimate per row; rows whose estimate is above ``core.WOR_FAST_TOL`` (float64; ``WOR_FAST_TOL32``
    in float32) or that are outside its contract get a second device pass with a longer range and
    more nodes (``WOR_FAST_RETRY``; their count in ``info["device_retry_rows"]``), and rows still
    outside are recomputed with the numpy path (listed in ``info["numpy_fallback_rows"]``), so
    every row keeps the numpy accuracy contract.
    ``info["error_bound"]`` is the largest estimate of the rows kept (and the numpy bound of the
    recomputed ones).

    Parameters
    ----------
    p
        Validated float64 target ``(V,)`` or ``(B, V)``.
    scheme
        The draft scheme (its batch broadcasts against ``p``).
    dtype
        ``"float64"`` (default; x64 enabled locally) or ``"float32"``.
    chunk_rows, max_chunk_bytes
        Rows per device call; default from the memory budget.
    shard, devices
        Split each chunk over ``devices`` (default all local devices; on when there are several).
    return_order
        Put the ratio permutation ``(B, V)`` in ``info["order"]`` (prefix schemes).
    compensated
        Compensated prefix sums (default: on for float32).
    iid_method
        I.i.d. drafts only: ``"sort"`` (argsort of the ratios, :func:`.core.alpha_iid`),
        ``"bucketed"`` (sort-free, :func:`.bucketed.alpha_iid_bucketed_mask`: same value and
        witness, sorts only the candidate buckets) or ``"auto"`` (default): bucketed on CPU,
        where it measured 6-13x faster at ``V = 131072``, and the sort elsewhere until the
        bucketed path has been timed on that device (``docs/jax.md``). ``return_order=True``
        always sorts (the permutation is the output). ``info["iid_method"]`` says which ran.

    Returns
    -------
    Result
        ``value``, boolean ``witness``; ``info`` has ``prefix_length`` (prefix schemes), ``dtype``,
        ``error_bound``, ``num_chunks``, ``num_devices``, ``device``, ``time_s``.
    """
    t0 = time.perf_counter()
    dt = _dtype(dtype)
    p2, B, single = _rows(p, scheme)
    V = p2.shape[1]
    q2 = np.broadcast_to(np.atleast_2d(scheme.q), (B, V))
    devs = _devices(shard, devices)
    ndev = len(devs) if devs else 1
    n = scheme.n
    row_elements = None
    if isinstance(scheme, WithoutReplacement) and n >= 3:
        from .wor_moments import work_elements

        row_elements = work_elements(V, n)
    rows = _chunk_rows(B, V, dt.itemsize, chunk_rows, max_chunk_bytes, ndev, row_elements)
    is_prefix = not isinstance(scheme, (Greedy, Hub))
    if iid_method not in ("auto", "sort", "bucketed"):
        raise ValueError(
            f"argument 'iid_method': expected 'auto', 'sort' or 'bucketed', got {iid_method!r}"
        )
    platform = str(jax.local_devices()[0].platform)
    if iid_method == "auto":
        iid_method = "bucketed" if platform == "cpu" else "sort"
    bucketed_iid = isinstance(scheme, IID) and iid_method == "bucketed" and not return_order
    wor_fast = isinstance(scheme, WithoutReplacement) and n >= 3

    def fn(pc: Any, qc: Any) -> tuple[Any, ...]:
        if bucketed_iid:
            from .bucketed import alpha_iid_bucketed_mask

            value, k, mask = alpha_iid_bucketed_mask(pc, qc, n, compensated=compensated)
            return value, mask, k
        if isinstance(scheme, Hub):
            return core.alpha_hub(pc, qc)
        if isinstance(scheme, Greedy):
            return core.alpha_greedy(pc, qc, n)
        if wor_fast:
            from .wor_moments import alpha_wor_fast

            wf = alpha_wor_fast(pc, qc, n, compensated)
            mask = core.prefix_mask(wf.order, wf.k)
            base = (wf.value, mask, wf.k, wf.order) if return_order else (wf.value, mask, wf.k)
            return (*base, wf.error)
        f = core.alpha_iid_with_order if isinstance(scheme, IID) else core.alpha_wor_with_order
        out = f(pc, qc, n, compensated)
        mask = core.prefix_mask(out.order, out.k)
        return (out.value, mask, out.k, out.order) if return_order else (out.value, mask, out.k)

    with x64(dt == np.float64):
        arrays = [p2.astype(dt), q2.astype(dt)]
        outs, nchunks = _run_chunked(fn, arrays, B, rows, devs)
        device = str(jax.local_devices()[0].platform)
    value = outs[0].astype(np.float64)
    mask = outs[1].astype(bool)
    fallback_rows: list[int] = []
    error_bound = 0.0 if dt == np.float64 else (
        FLOAT32_IID_ERROR_BOUND
        if isinstance(scheme, IID) and compensated is not False
        else FLOAT32_ERROR_BOUND
    )
    if wor_fast:
        row_err = outs[-1].astype(np.float64)
        tol = core.WOR_FAST_TOL if dt == np.float64 else core.WOR_FAST_TOL32
        ok = row_err <= tol  # NaN/inf: outside the contract
        error_bound = float(np.max(row_err[ok], initial=0.0))
        retry = [int(b) for b in np.flatnonzero(~ok)]
        fallback_rows, retry_err = _wor_retry(
            p2, q2, n, retry, dt, compensated, value, mask, outs, return_order, max_chunk_bytes
        )
        error_bound = max(error_bound, retry_err)
        retried = len(retry) - len(fallback_rows)
        np_err = _wor_fallback(p2, q2, n, fallback_rows, value, mask, outs, return_order)
        error_bound = max(error_bound, np_err)
    info: dict[str, Any] = {
        "backend": "jax",
        "dtype": str(dt),
        "error_bound": error_bound,
        "num_chunks": nchunks,
        "chunk_rows": rows,
        "num_devices": ndev,
        "device": device,
        "jax_version": jax.__version__,
    }
    if isinstance(scheme, IID):
        info["iid_method"] = "bucketed" if bucketed_iid else "sort"
    if wor_fast:
        info["wor_method"] = "fast"
        info["device_retry_rows"] = retried
    if fallback_rows:
        info["numpy_fallback_rows"] = fallback_rows
    if is_prefix:
        k = outs[2].astype(np.int64)
        info["prefix_length"] = int(k[0]) if single else k
        if return_order:
            info["order"] = outs[3][0] if single else outs[3]
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


def solve_lovasz(
    p: np.ndarray,
    scheme: Scheme,
    *,
    max_iter: int = 2000,
    tol: float = CERT_GAP_TOL,
    chunk_rows: int | None = None,
    max_chunk_bytes: int = CHUNK_BYTES,
    shard: bool | None = None,
    devices: Any = None,
) -> Result:
    r"""Independent drafts: Frank--Wolfe on the Lovász dual (float64), with a gap certificate.

    ``value`` is the upper bound :math:`1 + f(H)` attained by ``witness``; ``info["lower"]`` the
    certified lower bound; ``info["gap"]`` their difference. ``status`` is OPTIMAL when every row's
    gap is at most ``tol`` (default ``CERT_GAP_TOL``), else INACCURATE.
    """
    from .submodular import alpha_independent

    if not isinstance(scheme, Independent):  # pragma: no cover - guarded by the registry
        raise ValueError(f"argument 'scheme': expected Independent, got {type(scheme).__name__}")
    if isinstance(max_iter, bool) or int(max_iter) < 1:
        raise ValueError(f"argument 'max_iter': must be a positive integer, got {max_iter}")
    t0 = time.perf_counter()
    p2, B, single = _rows(p, scheme)
    V = p2.shape[1]
    qs = np.stack([np.broadcast_to(np.atleast_2d(q), (B, V)) for q in scheme.qs], axis=1)
    devs = _devices(shard, devices)
    ndev = len(devs) if devs else 1
    from .submodular import ACTIVE_SET_SIZE

    # Per row: the work arrays of the n + 1 inputs plus the Frank-Wolfe atom buffer
    # (min(V + 1, ACTIVE_SET_SIZE) vertices of length V), all float64.
    atoms = min(V + 1, ACTIVE_SET_SIZE) * V
    per_row = V * (scheme.n + 1) + -(-atoms // WORK_ARRAYS)
    rows = _chunk_rows(B, per_row, 8, chunk_rows, max_chunk_bytes, ndev)

    def fn(pc: Any, qc: Any) -> tuple[Any, ...]:
        out = alpha_independent(pc, qc, max_iter=int(max_iter), tol=float(tol))
        return out.value, out.witness, out.lower, out.iterations

    with x64(True):
        outs, nchunks = _run_chunked(fn, [p2.astype(np.float64), qs.astype(np.float64)], B, rows,
                                     devs)
    value, mask, lower, iters = outs
    gap = np.maximum(value - lower, 0.0)
    status = Status.OPTIMAL if np.all(gap <= tol) else Status.INACCURATE
    info: dict[str, Any] = {
        "backend": "jax",
        "dtype": "float64",
        "lower": float(lower[0]) if single else lower,
        "gap": float(gap[0]) if single else gap,
        "iterations": int(np.max(iters)),
        "error_bound": float(np.max(gap)),
        "num_chunks": nchunks,
        "num_devices": ndev,
        "time_s": time.perf_counter() - t0,
    }
    return Result(
        value=float(value[0]) if single else value,
        witness=mask[0].astype(bool) if single else mask.astype(bool),
        status=status,
        method="lovasz",
        scheme=scheme.name,
        info=info,
    )
