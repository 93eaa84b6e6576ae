"""Benchmark of the JAX backend: batched alpha* over positions x full vocabularies.

For each case (B x V, scheme, n) it reports the time per batch of the jit-compiled core (float32,
compensated prefix sums; value + prefix length), positions per second, the time of ``jnp.sort`` of
``p`` alone on the same shape and device and the ratio to it, the float32 error against the float64
numpy path on a slice of rows, and the numpy CPU time for the same work measured on that slice (and
extrapolated to the batch).

Needs only numpy and jax (run from the repository root with ``PYTHONPATH=.``).

    python benchmarks/bench_jax.py --quick            # CPU, seconds: V = 128k, small batch
    python benchmarks/bench_jax.py --gpu --out DIR    # the issue's GPU cases (benchmarks/gpu.sh)

Writes ``<out>/bench_jax_<mode>.json`` and ``<out>/bench_jax_<mode>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax
import jax.numpy as jnp

from spectheory.solvers.jax_backend import bucketed, core
from spectheory.solvers.prefix import _prefix_wor, prefix_iid

GPU_SHAPES = [(1024, 32768), (1024, 131072), (256, 262144)]
#: (B, V, scheme, n) cases of each mode.
GPU_CASES = [(B, V, k, n) for B, V in GPU_SHAPES for k, n in [("iid", 2), ("iid", 4), ("iid", 8),
                                                               ("wor", 4)]]
QUICK_CASES = [(2, 131072, "iid", 2), (2, 131072, "iid", 8), (2, 131072, "wor", 2), (2, 8192, "iid", 4),
               (2, 8192, "wor", 4)]


def make_pair(key: Any, B: int, V: int, dtype: Any = jnp.float32) -> tuple[jax.Array, jax.Array]:
    """Language-model-like target/draft rows: softmax of correlated Gaussian logits (scale 3),
    generated on the device."""
    k1, k2 = jax.random.split(key)
    base = jax.random.normal(k1, (B, V), dtype=jnp.float32) * 3.0
    noise = jax.random.normal(k2, (B, V), dtype=jnp.float32) * 1.0
    p = jax.nn.softmax(base, axis=-1)
    q = jax.nn.softmax(base + noise, axis=-1)
    return p.astype(dtype), q.astype(dtype)


def timeit(fn: Any, *args: Any, reps: int = 5) -> float:
    """Median wall time (ms) of ``fn(*args)`` after one warm-up call, with block_until_ready."""
    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def numpy_reference(kind: str, n: int, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """float64 numpy alpha* rows (the reference path of spectheory)."""
    if kind == "iid":
        return prefix_iid(p, q, n)[0]
    if kind == "wor" and n <= 2:
        return _prefix_wor(p, q, n)[0]
    from spectheory.solvers.prefix import prefix_order
    from spectheory.solvers.wor import wor_chain

    out = []
    for b in range(p.shape[0]):
        order = prefix_order(p[b], q[b])
        chain = 1.0 + np.cumsum(p[b, order]) - wor_chain(q[b, order], n).Q
        out.append(min(1.0, float(np.min(chain))))
    return np.array(out)


def core_fn(kind: str, n: int) -> Any:
    if kind == "iid":
        return jax.jit(lambda p, q: core.alpha_iid(p, q, n))
    return jax.jit(lambda p, q: core.alpha_wor(p, q, n))


def run_case(B: int, V: int, kind: str, n: int, ref_rows: int, reps: int) -> dict[str, Any]:
    key = jax.random.PRNGKey(B * 7 + V + n)
    p, q = make_pair(key, B, V)
    fn = core_fn(kind, n)
    t_core = timeit(fn, p, q, reps=reps)
    sort = jax.jit(lambda x: jnp.sort(x, axis=-1))
    t_sort = timeit(sort, p, reps=reps)
    v32, _ = fn(p, q)
    v32 = np.asarray(v32, dtype=np.float64)[:ref_rows]
    p64 = np.asarray(p[:ref_rows], dtype=np.float64)
    q64 = np.asarray(q[:ref_rows], dtype=np.float64)
    t0 = time.perf_counter()
    ref = numpy_reference(kind, n, p64, q64)
    t_np = (time.perf_counter() - t0) * 1e3
    extra: dict[str, Any] = {}
    if kind == "iid":
        # The sort-free path on the same data: exactness against the sort path, then its time.
        try:
            bfn = jax.jit(lambda p, q: bucketed.alpha_iid_bucketed_info(p, q, n))
            t0 = time.perf_counter()
            out = bfn(p, q)
            jax.block_until_ready(out)
            extra["bucketed_compile_s"] = time.perf_counter() - t0
            vb = np.asarray(out.value, dtype=np.float64)
            extra["bucketed_max_diff_vs_sort"] = float(
                np.max(np.abs(vb - np.asarray(fn(p, q)[0], dtype=np.float64)))
            )
            extra["bucketed_overflow"] = bool(out.overflow)
            extra["bucketed_mean_candidates"] = float(np.mean(np.asarray(out.num_candidates)))
            t_b = timeit(bfn, p, q, reps=reps)
            extra["bucketed_ms"] = t_b
            extra["bucketed_ratio_to_sort"] = t_b / t_sort
        except Exception as exc:  # the sort path's row must survive
            traceback.print_exc()
            extra["bucketed_error"] = type(exc).__name__
    return {
        "B": B,
        "V": V,
        "scheme": kind,
        "n": n,
        "dtype": "float32",
        "time_ms": t_core,
        "positions_per_s": B / (t_core / 1e3),
        "sort_ms": t_sort,
        "ratio_to_sort": t_core / t_sort,
        "f32_max_err": float(np.max(np.abs(v32 - ref))),
        "numpy_rows": ref_rows,
        "numpy_ms_per_row": t_np / ref_rows,
        "numpy_est_batch_ms": t_np / ref_rows * B,
        **extra,
    }


def to_markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [
        header,
        "",
        "| B x V | scheme | n | time/batch (ms) | positions/s | jnp.sort (ms) | ratio to sort "
        "| f32 max err | numpy ms/row (rows) | numpy est. batch (ms) "
        "| sort-free (ms) | sort-free / sort |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['B']} x {r['V']} | {r['scheme']} | {r['n']} | FAILED: {r['error']} "
                "| | | | | | | | |"
            )
            continue
        if "bucketed_ms" in r:
            sf = f"{r['bucketed_ms']:.2f} | {r['bucketed_ratio_to_sort']:.2f}"
        else:
            sf = r.get("bucketed_error", "-") + " | -"
        lines.append(
            f"| {r['B']} x {r['V']} | {r['scheme']} | {r['n']} | {r['time_ms']:.2f} "
            f"| {r['positions_per_s']:.3g} | {r['sort_ms']:.2f} | {r['ratio_to_sort']:.2f} "
            f"| {r['f32_max_err']:.2g} | {r['numpy_ms_per_row']:.1f} ({r['numpy_rows']}) "
            f"| {r['numpy_est_batch_ms']:.0f} | {sf} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CPU, seconds: V = 128k, small batch")
    mode.add_argument("--gpu", action="store_true", help="the issue's B x V cases")
    ap.add_argument("--out", default=os.path.join("benchmarks", "results"))
    ap.add_argument("--budget", type=float, default=240.0, help="total seconds before skipping")
    ap.add_argument("--ref-rows", type=int, default=2, help="rows for the numpy reference")
    ap.add_argument("--note", default="", help="free text stored with the results (e.g. load)")
    args = ap.parse_args(argv)
    name = "gpu" if args.gpu else "quick"
    cases = GPU_CASES if args.gpu else QUICK_CASES
    reps = 5 if args.gpu else 2
    t_start = time.perf_counter()
    dev = jax.devices()[0]
    rows: list[dict[str, Any]] = []
    for B, V, kind, n in cases:
        if time.perf_counter() - t_start > args.budget:
            rows.append({"B": B, "V": V, "scheme": kind, "n": n, "error": "time budget"})
            continue
        ref_rows = 1 if (kind == "wor" and n > 2) else args.ref_rows
        try:
            r = run_case(B, V, kind, n, ref_rows, reps if kind == "iid" else min(reps, 2))
        except Exception as exc:  # one failure must not stop the others
            traceback.print_exc()
            r = {"B": B, "V": V, "scheme": kind, "n": n, "error": f"{type(exc).__name__}"}
        rows.append(r)
        print(json.dumps(r), flush=True)
    meta = {
        "mode": name,
        "device": f"{dev.platform}: {getattr(dev, 'device_kind', '')}",
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "host": platform.machine(),
        "cpu_count": os.cpu_count(),
        "note": args.note,
        "total_s": time.perf_counter() - t_start,
        "timing": "median of repeats after one warm-up call, block_until_ready; value + prefix "
        "length (no witness mask); inputs float32 generated on the device",
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"bench_jax_{name}.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    header = (
        f"JAX backend, {meta['device']}, JAX {meta['jax']}"
        + (f" ({args.note})" if args.note else "")
    )
    md = to_markdown(rows, header)
    with open(os.path.join(args.out, f"bench_jax_{name}.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
