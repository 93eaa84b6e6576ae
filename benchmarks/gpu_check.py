"""Correctness checks of the JAX backend on the accelerator (plain asserts; numpy + jax only).

Each check compares the jit-compiled core on the device with the float64 numpy path of spectheory
on the same inputs: float64 (x64 enabled locally) to ``F64_ATOL``, float32 to the documented
``FLOAT32_ERROR_BOUND``. Every check runs in its own try/except so one failure does not hide the
others; the exit status is 1 if any check failed. Results go to ``<out>/gpu_check.json``.

    PYTHONPATH=. python benchmarks/gpu_check.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax
import jax.numpy as jnp

from spectheory.solvers.jax_backend import core
from spectheory.solvers.jax_backend.solve import FLOAT32_ERROR_BOUND, x64
from spectheory.solvers.prefix import _prefix_wor, prefix_iid, prefix_order

#: numpy vs JAX in float64 (the issue's contract).
F64_ATOL = 1e-12
#: numpy any-n without-replacement chain contract (spectheory.solvers.wor.WOR_TARGET).
WOR_ATOL = 1e-11


def _pair(seed: int, B: int, V: int, scale: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((B, V)) * scale
    p = np.exp(base - base.max(1, keepdims=True))
    q = np.exp(base + rng.standard_normal((B, V)) - base.max(1, keepdims=True) - 3.0)
    return p / p.sum(1, keepdims=True), q / q.sum(1, keepdims=True)


def _wor_numpy(p: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    from spectheory.solvers.wor import wor_chain

    out = []
    for b in range(p.shape[0]):
        order = prefix_order(p[b], q[b])
        chain = 1.0 + np.cumsum(p[b, order]) - wor_chain(q[b, order], n).Q
        out.append(min(1.0, float(np.min(chain))))
    return np.array(out)


def _greedy_numpy(p: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    """The greedy closed form in float64 numpy (as spectheory.solvers.prefix._greedy, without the
    scheme's sum-to-1 validation, which float32-rounded rows need not pass at 1e-9)."""
    D = np.zeros(q.shape, dtype=bool)
    np.put_along_axis(D, np.argsort(-q, axis=1, kind="stable")[:, : n - 1], True, axis=1)
    rest = np.sum(np.where(D, 0.0, q), axis=1, keepdims=True)
    return np.sum(np.where(D, p, np.minimum(p, np.where(D, 0.0, q / rest))), axis=1)


def check(kind: str, n: int, B: int, V: int, dtype: str, seed: int) -> dict[str, Any]:
    p, q = _pair(seed, B, V)
    if dtype == "float32":
        p = p.astype(np.float32).astype(np.float64)  # same float32 inputs for both sides
        q = q.astype(np.float32).astype(np.float64)
    refs: dict[str, Callable[[], np.ndarray]] = {
        "iid": lambda: prefix_iid(p, q, n)[0],
        "wor": lambda: _prefix_wor(p, q, n)[0] if n <= 2 else _wor_numpy(p, q, n),
        "greedy": lambda: _greedy_numpy(p, q, n),
    }
    ref = refs[kind]()
    with x64(dtype == "float64"):
        pj = jnp.asarray(p.astype(dtype))
        qj = jnp.asarray(q.astype(dtype))
        if kind == "iid":
            v, _ = core.alpha_iid(pj, qj, n)
        elif kind == "wor" and n > 2:
            from spectheory.solvers.jax_backend.wor_moments import alpha_wor_fast

            out = alpha_wor_fast(pj, qj, n)
            v = out.value
            est = np.asarray(jax.block_until_ready(out.error), dtype=np.float64)
        elif kind == "wor":
            v, _ = core.alpha_wor(pj, qj, n)
        else:
            v, _ = core.alpha_greedy(pj, qj, n)
        v = np.asarray(jax.block_until_ready(v), dtype=np.float64)
    if dtype == "float64":
        tol = WOR_ATOL if (kind == "wor" and n > 2) else F64_ATOL
    else:
        tol = FLOAT32_ERROR_BOUND
    if kind == "wor" and n > 2:
        # the fast path's own estimate per row; rows it declines (inf) go to the API's retry
        inside = est <= (core.WOR_FAST_TOL if dtype == "float64" else core.WOR_FAST_TOL32)
        d = np.abs(v - ref)
        assert np.all(d[inside] <= est[inside] + 1e-14), f"wor n={n}: {d.max():.3g} > estimate"
        err = float(np.max(d[inside], initial=0.0))
        return {"max_err": err, "tol": tol, "inside": int(inside.sum()), "rows": int(v.size)}
    err = float(np.max(np.abs(v - ref)))
    assert err <= tol, f"{kind} n={n} {B}x{V} {dtype}: max error {err:.3g} > {tol:g}"
    return {"max_err": err, "tol": tol}


def check_api() -> dict[str, Any]:
    """The public path: optimal_acceptance(..., backend="jax") on the device, with witness."""
    import spectheory as st

    p, q = _pair(99, 8, 32768)
    r = st.optimal_acceptance(p, st.IID(q, 4), backend="jax")
    ref = st.optimal_acceptance(p, st.IID(q, 4), method="prefix")
    err = float(np.max(np.abs(r.value - ref.value)))
    assert err <= F64_ATOL, err
    sub = 1.0 + np.sum(np.where(r.witness, p, 0.0), axis=1) - np.sum(
        np.where(r.witness, q, 0.0), axis=1
    ) ** 4
    assert float(np.max(np.abs(sub - r.value))) <= F64_ATOL
    return {"max_err": err, "device": r.info["device"]}


def _record(entry: dict, fn, results: list) -> int:
    """Run one check into ``entry`` (status ok / FAILED), append and print it; return 1 on failure."""
    failed = 0
    try:
        entry.update(fn())
        entry["status"] = "ok"
    except Exception as exc:  # one failure must not stop the other checks
        traceback.print_exc()
        entry["status"] = f"FAILED: {exc}"
        failed = 1
    results.append(entry)
    print(json.dumps(entry), flush=True)
    return failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join("benchmarks", "results"))
    ap.add_argument("--budget", type=float, default=100.0, help="seconds before skipping")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    cases: list[tuple[str, int, int, int, str]] = []
    for dtype in ("float64", "float32"):
        cases += [
            ("iid", 1, 16, 32768, dtype),
            ("iid", 2, 16, 262144, dtype),
            ("iid", 8, 16, 262144, dtype),
            ("wor", 2, 16, 131072, dtype),
            ("greedy", 4, 16, 131072, dtype),
            ("wor", 4, 2, 32768, dtype),
        ]
    results: list[dict[str, Any]] = []
    failed = 0
    for i, (kind, n, B, V, dtype) in enumerate(cases):
        entry: dict[str, Any] = {"check": kind, "n": n, "B": B, "V": V, "dtype": dtype}
        if time.perf_counter() - t0 > args.budget:
            entry["status"] = "skipped (time budget)"
            results.append(entry)
            continue
        failed += _record(entry, functools.partial(check, kind, n, B, V, dtype, seed=i), results)
    for name, fn in (("api_iid_float64", check_api),):
        failed += _record({"check": name}, fn, results)
    dev = jax.devices()[0]
    meta = {
        "device": f"{dev.platform}: {getattr(dev, 'device_kind', '')}",
        "jax": jax.__version__,
        "failed": failed,
        "total_s": time.perf_counter() - t0,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
        json.dump({"meta": meta, "checks": results}, f, indent=2)
    print(json.dumps(meta))
    print("GPU CHECK:", "ALL OK" if failed == 0 else f"{failed} FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
