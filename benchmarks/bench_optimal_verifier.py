"""Setup and sampling time of the optimal verifier: numpy layout (CPU) and its JAX port (CPU/GPU).

Configurations: V in {1k, 32k, 128k}, n in {2, 4, 8}. Rows are LM-like: Gumbel logits (scale 2) for
p, the same logits plus Gaussian noise (scale ``--noise``) for q.

* **numpy** (``spectheory.verifiers.optimal.layout_rule``): per-position setup (median and minimum
  over ``--repeats`` runs, wall and process CPU time), setup plus the first verified tuple (the
  rule builds its per-piece arrays only if they are inspected; sampling never needs them), and
  sampling per verified tuple (``LayoutRule.sample_many`` on N tuples; drawing the drafts is not
  timed).
* **seed sweep** (``--seeds K``, default 6 with ``--quick``): the setup at V = 32k, n = 4 on K
  rows of the same generator (seeds 0..K-1), since the time depends on the row (the size of
  :math:`H^*`, the number of exchanges). With ``--baseline REV`` the implementation at git
  revision ``REV`` is timed alternately with the current one in the same process (same rows,
  interleaved runs), so that both see the same load.
* **JAX** (``spectheory.verifiers.optimal_jax``): the jit-compiled batched setup on ``(B, V)`` rows
  (per-position time = batch time / B; compilation timed separately) and the batched sampler
  (one tuple per row, and N tuples of one row).

Every JAX configuration is checked against numpy *before* it is timed: in float64 the per-token
accepted mass must match the numpy layout to ``FLOAT64_AGREEMENT`` and the acceptance must equal
alpha*; in float32 the acceptance must be within ``FLOAT32_ACCEPTANCE_BOUND`` of the float64 alpha*.

Modes::

    python benchmarks/bench_optimal_verifier.py --quick   # seconds: V = 1k, 32k at n = 4, 6 seeds
    python benchmarks/bench_optimal_verifier.py --quick --no-jax --baseline HEAD --repeats 21
    python benchmarks/bench_optimal_verifier.py           # CPU: all configurations, JAX with B = 1
    python benchmarks/bench_optimal_verifier.py --gpu     # JAX on the default device, B in {1, 256}

The ``--gpu`` mode is self-contained: it needs only numpy and jax (``PYTHONPATH=.``, no network),
runs every step under a global time budget (``--budget-s``; configurations that do not fit are
recorded as skipped) and writes ``bench_optimal_verifier_gpu.json`` to ``--out``.
Prints a table; JSON goes to ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

from spectheory.verifiers.optimal import _sorted_prefix, accepted_mass_iid, layout_rule

GOAL_CPU_MS = 10.0  # issue 8: setup under 10 ms per position at V = 32k, n = 4 (numpy, CPU)
GOAL_GPU_MS = 1.0  # issue 8: under 1 ms per position on a GPU


def _rows(seed: int, B: int, V: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.gumbel(size=(B, V)) * 2.0
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    zq = z + noise * rng.standard_normal((B, V))
    q = np.exp(zq - zq.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    return p, q


def _alpha(p: np.ndarray, q: np.ndarray, n: int) -> float:
    """alpha* of one float64 row by the numpy sorted prefix (no scipy needed)."""
    return float(_sorted_prefix(p, q, n).alpha)


def _timed(f: Any, repeats: int, cap_s: float) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    start = time.perf_counter()
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        f()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        if time.perf_counter() - start > cap_s:
            break
    return walls, cpus


# ------------------------------------------------------------------------------------ numpy
def bench_numpy(V: int, n: int, args: argparse.Namespace) -> dict[str, Any]:
    p, q = _rows(1000 * n + V, 1, V, args.noise)
    p, q = p[0], q[0]
    rule = layout_rule(p, q, n)  # warm-up
    walls, cpus = _timed(lambda: layout_rule(p, q, n), args.repeats, args.cap_s)
    alpha = _alpha(p, q, n)
    rng = np.random.default_rng(V + n)
    drafts = rng.choice(V, size=(args.tuples, n), p=q)

    def setup_and_first() -> None:
        layout_rule(p, q, n).sample(drafts[0], rng)

    first, _ = _timed(setup_and_first, args.repeats, args.cap_s)
    t = time.perf_counter()
    rule.sample_many(drafts, rng)
    samp = time.perf_counter() - t
    extra: dict[str, Any] = {}
    if args.baseline_module is not None:  # alternate with the baseline, same row, same load
        old = args.baseline_module._layout_rule_checked
        old(p, q, n)
        new_t, old_t = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            layout_rule(p, q, n)
            new_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            old(p, q, n)
            old_t.append(time.perf_counter() - t)
        extra = {"baseline": args.baseline,
                 "alternated_setup_ms": 1e3 * float(np.median(new_t)),
                 "baseline_setup_ms": 1e3 * float(np.median(old_t)),
                 "ratio": float(np.median(new_t) / np.median(old_t))}
    return {
        "backend": "numpy", "device": "cpu", "dtype": "float64", "V": V, "n": n, "B": 1,
        "alpha_star": alpha, "acceptance_minus_alpha": rule.acceptance - alpha,
        "setup_ms": 1e3 * float(np.median(walls)), "setup_min_ms": 1e3 * min(walls),
        "setup_cpu_ms": 1e3 * float(np.median(cpus)), "repeats": len(walls),
        "setup_plus_first_sample_ms": 1e3 * float(np.median(first)),
        "sample_us_per_tuple": 1e6 * samp / args.tuples,
        "exchanges": rule.info["exchanges"], "pieces": rule.info["pieces"], **extra,
    }


# -------------------------------------------------------------------------------------- JAX
def bench_jax(V: int, n: int, B: int, dtype: str, args: argparse.Namespace) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from spectheory.solvers.jax_backend.solve import x64
    from spectheory.verifiers.optimal_jax import (
        FLOAT32_ACCEPTANCE_BOUND,
        FLOAT64_AGREEMENT,
        layout_sample,
        layout_setup,
    )

    row: dict[str, Any] = {
        "backend": "jax", "device": str(jax.devices()[0].platform), "dtype": dtype,
        "V": V, "n": n, "B": B,
    }
    p, q = _rows(1000 * n + V + B, B, V, args.noise)
    with x64(dtype == "float64"):
        pj = jnp.asarray(p.astype(dtype))
        qj = jnp.asarray(q.astype(dtype))
        t = time.perf_counter()
        lay = layout_setup(pj, qj, n)
        jax.block_until_ready(lay)
        row["compile_s"] = time.perf_counter() - t
        # Correctness against numpy before timing (first and last row).
        worst_acc, worst_mass = 0.0, 0.0
        for b in sorted({0, B - 1}):
            pb = p[b].astype(dtype).astype(np.float64)
            qb = q[b].astype(dtype).astype(np.float64)
            pb /= pb.sum()
            qb /= qb.sum()
            alpha = _alpha(pb, qb, n)
            worst_acc = max(worst_acc, abs(float(lay.acceptance[b]) - alpha))
            if dtype == "float64":
                ref = accepted_mass_iid(pb, qb, n)
                worst_mass = max(worst_mass, float(np.max(np.abs(np.asarray(lay.accepted[b]) - ref))))
        tol = FLOAT64_AGREEMENT if dtype == "float64" else FLOAT32_ACCEPTANCE_BOUND
        row["check_acceptance_err"] = worst_acc
        row["check_mass_err"] = worst_mass if dtype == "float64" else None
        row["check_ok"] = bool(worst_acc <= tol and worst_mass <= tol)

        def run() -> None:
            jax.block_until_ready(layout_setup(pj, qj, n))

        walls, _ = _timed(run, args.repeats, args.cap_s)
        row["setup_batch_ms"] = 1e3 * float(np.median(walls))
        row["setup_ms"] = row["setup_batch_ms"] / B  # per position
        row["setup_min_ms"] = 1e3 * min(walls) / B
        row["repeats"] = len(walls)
        # Sampling: one tuple per row (batch), and N tuples of row 0.
        rng = np.random.default_rng(V + n + B)
        d1 = np.stack([rng.choice(V, size=n, p=q[b]) for b in range(B)]).astype(np.int32)
        d1j = jnp.asarray(d1)
        key = jax.random.key(0)
        jax.block_until_ready(layout_sample(lay, d1j, key))  # compile
        w1, _ = _timed(lambda: jax.block_until_ready(layout_sample(lay, d1j, key)),
                       args.repeats, args.cap_s)
        row["sample_batch_us_per_tuple"] = 1e6 * float(np.median(w1)) / B
        lay0 = jax.tree_util.tree_map(lambda x: x[0], lay)
        N = args.tuples
        dN = jnp.asarray(rng.choice(V, size=(N, n), p=q[0]).astype(np.int32))
        out, acc = layout_sample(lay0, dN, key)
        jax.block_until_ready(out)
        wN, _ = _timed(lambda: jax.block_until_ready(layout_sample(lay0, dN, key)),
                       max(3, args.repeats // 3), args.cap_s)
        row["sample_us_per_tuple"] = 1e6 * float(np.median(wN)) / N
        row["sample_acceptance"] = float(np.mean(np.asarray(acc)))
        row["alpha_star_row0"] = float(lay.alpha[0])
    return row


# ------------------------------------------------------------------------------- seed sweep
def _baseline_module(rev: str) -> Any:
    """The numpy layout at git revision ``rev`` (``spectheory/verifiers/optimal.py``), loaded
    as a separate module next to the current one."""
    import spectheory.verifiers.base as base

    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(
        ["git", "show", f"{rev}:spectheory/verifiers/optimal.py"], cwd=root, check=True,
        capture_output=True, text=True,
    ).stdout
    mod = types.ModuleType("spectheory.verifiers._optimal_baseline")
    mod.__package__ = "spectheory.verifiers"
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    saved = dict(base._REGISTRY)
    exec(compile(src, f"{rev}:optimal.py", "exec"), mod.__dict__)
    base._REGISTRY.clear()  # the old class registered itself under the same name: undo
    base._REGISTRY.update(saved)
    return mod


def _git_commit(rev: str) -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", rev], cwd=Path(__file__).resolve().parent.parent,
                              check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # pragma: no cover - no git
        return None


def bench_seeds(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Setup at V = 32k, n = 4 on ``args.seeds`` rows; old and new alternated if a baseline."""
    from spectheory.verifiers.optimal import _layout_rule_checked

    old = args.baseline_module
    V, n = 32_000, 4
    out = []
    for seed in range(args.seeds):
        p, q = _rows(seed, 1, V, args.noise)
        p, q = p[0], q[0]
        rule = _layout_rule_checked(p, q, n)  # warm-up (and the row's statistics)
        if old is not None:
            old._layout_rule_checked(p, q, n)
        new_t, old_t = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            _layout_rule_checked(p, q, n)
            new_t.append(time.perf_counter() - t)
            if old is not None:
                t = time.perf_counter()
                old._layout_rule_checked(p, q, n)
                old_t.append(time.perf_counter() - t)
        row: dict[str, Any] = {
            "seed": seed, "V": V, "n": n, "repeats": args.repeats,
            "witness_size": int(rule.witness.sum()), "exchanges": rule.info["exchanges"],
            "pieces": rule.info["pieces"], "setup_ms": 1e3 * float(np.median(new_t)),
            "setup_min_ms": 1e3 * min(new_t),
        }
        msg = f"seed {seed}: setup={row['setup_ms']:7.3f} ms (min {row['setup_min_ms']:.3f})"
        if old is not None:
            row["baseline"] = args.baseline
            row["baseline_setup_ms"] = 1e3 * float(np.median(old_t))
            row["ratio"] = row["setup_ms"] / row["baseline_setup_ms"]
            msg += f"  baseline {args.baseline}={row['baseline_setup_ms']:7.3f} ms  ratio {row['ratio']:.2f}"
        print(f"numpy V=32000 n=4 {msg}  |H*|={row['witness_size']}", flush=True)
        out.append(row)
    return out


# ------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="V = 1k and 32k at n = 4 (seconds)")
    ap.add_argument("--gpu", action="store_true", help="JAX only, B in {1, 256}, float32/float64")
    ap.add_argument("--out", default=None, help="output directory (default benchmarks/results)")
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--tuples", type=int, default=None, help="tuples per sampling measurement")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per configuration")
    ap.add_argument("--budget-s", type=float, default=None, help="global time budget (seconds)")
    ap.add_argument("--no-jax", action="store_true", help="numpy only")
    ap.add_argument("--seeds", type=int, default=None,
                    help="seed sweep at V = 32k, n = 4 over this many rows (default 6 with --quick)")
    ap.add_argument("--baseline", default=None,
                    help="git revision whose numpy layout is timed alternately in the seed sweep")
    args = ap.parse_args()
    if args.seeds is None:
        args.seeds = 6 if args.quick and not args.gpu else 0
    if args.quick:
        configs = [(1_000, 4), (32_000, 4)]
    else:
        configs = [(V, n) for V in (1_000, 32_000, 128_000) for n in (2, 4, 8)]
    args.tuples = args.tuples or (2_000 if args.quick else 20_000)
    args.repeats = args.repeats or (5 if args.quick else 11)
    budget = args.budget_s or (60.0 if args.quick else 420.0 if args.gpu else 900.0)
    args.cap_s = 20.0 if not args.quick else 5.0
    deadline = time.perf_counter() + budget
    args.baseline_module = _baseline_module(args.baseline) if args.baseline else None
    load_start = os.getloadavg()
    rows: list[dict[str, Any]] = []
    plan: list[tuple[str, int, int, int, str]] = []
    if not args.gpu:
        plan += [("numpy", V, n, 1, "float64") for V, n in configs]
    if not args.no_jax:
        dtypes = ("float32", "float64") if (args.gpu or not args.quick) else ("float32",)
        batches = (256, 1) if args.gpu else (1,)  # the per-position goal is for batches
        plan += [("jax", V, n, B, dt) for dt in dtypes for B in batches for V, n in configs]
    for backend, V, n, B, dt in plan:
        if time.perf_counter() > deadline:
            rows.append({"backend": backend, "V": V, "n": n, "B": B, "dtype": dt,
                         "skipped": "time budget"})
            print(f"{backend:5} {dt} V={V:>7} n={n} B={B:>3}  skipped (time budget)", flush=True)
            continue
        try:
            r = bench_numpy(V, n, args) if backend == "numpy" else bench_jax(V, n, B, dt, args)
        except Exception as exc:  # record and go on: one failure must not lose the others
            r = {"backend": backend, "V": V, "n": n, "B": B, "dtype": dt, "error": repr(exc)}
            print(f"{backend:5} {dt} V={V:>7} n={n} B={B:>3}  ERROR {exc!r}", flush=True)
            rows.append(r)
            continue
        rows.append(r)
        extra = (
            f"|acc-alpha*|={abs(r['acceptance_minus_alpha']):.1e} cpu={r['setup_cpu_ms']:6.2f} ms"
            f" +1st sample={r['setup_plus_first_sample_ms']:.3f} ms"
            + (f" | alternated: {r['alternated_setup_ms']:.3f} vs {args.baseline}"
               f" {r['baseline_setup_ms']:.3f} ms, ratio {r['ratio']:.2f}" if "ratio" in r else "")
            if backend == "numpy"
            else f"check={'ok' if r['check_ok'] else 'FAIL'} ({r['check_acceptance_err']:.1e})"
            f" compile={r['compile_s']:.1f}s batch-sample={r['sample_batch_us_per_tuple']:.2f} us"
        )
        print(
            f"{backend:5} {dt} V={V:>7} n={n} B={B:>3}  setup={r['setup_ms']:8.3f} ms/position"
            f" (min {r['setup_min_ms']:.3f})  sample={r['sample_us_per_tuple']:7.3f} us/tuple"
            f"  {extra}",
            flush=True,
        )
    device = "cpu"
    if not args.no_jax:
        try:
            import jax

            device = str(jax.devices()[0])
        except Exception:  # pragma: no cover - jax missing
            device = "cpu (jax unavailable)"
    note = (
        f"{os.cpu_count()}-core CPU, under load (other developers' jobs running)"
        if not args.gpu
        else f"JAX on {device}"
    )
    sweep = bench_seeds(args) if args.seeds and not args.gpu else []
    load_end = os.getloadavg()
    goal = next((r for r in rows if r.get("backend") == "numpy" and r["V"] == 32_000
                 and r["n"] == 4), None)
    out = {
        "benchmark": "bench_optimal_verifier",
        "mode": "gpu" if args.gpu else "quick" if args.quick else "cpu",
        "conditions": note,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": device},
        "numpy": np.__version__,
        "goal_setup_ms_cpu_V32k_n4": GOAL_CPU_MS,
        "goal_setup_ms_gpu": GOAL_GPU_MS,
        "measured_setup_ms_V32k_n4": None if goal is None else goal.get("setup_ms"),
        "worst_seed_setup_ms_V32k_n4": max((r["setup_ms"] for r in sweep), default=None),
        "baseline": None if not args.baseline else {
            "rev": args.baseline, "commit": _git_commit(args.baseline),
            "note": "timed alternately with the current code, same rows, same process"},
        "load_average_1_5_15min": {"start": load_start, "end": load_end},
        "rows": rows,
        "seed_sweep": sweep,
    }
    name = ("bench_optimal_verifier_gpu" if args.gpu
            else "bench_optimal_verifier_quick" if args.quick else "bench_optimal_verifier")
    outdir = Path(args.out) if args.out else Path(__file__).resolve().parent / "results"
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / f"{name}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"[{note}] wrote {path}")


if __name__ == "__main__":
    main()
