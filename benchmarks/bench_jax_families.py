"""JAX backend on every distribution family (``benchmarks/families.py``): worst case first.

For each vocabulary size V, number of drafts n and family (plus the stored SmolLM2 rows at their
native V = 49,152), a batch
of ``B`` rows of that family is timed (best of ``reps`` after a compile call), with jit-compiled:

* ``sort``: one ``jnp.sort`` of the batch of ratios (the GPU goal's unit),
* ``iid_sort`` / ``iid_bucketed``: alpha* for i.i.d. drafts by the sort path
  (``core.alpha_iid``) and by the sort-free bucketed path (``bucketed.alpha_iid_bucketed``),
* ``wor_fast``: without replacement, ``wor_moments.alpha_wor_fast`` (the API's first pass),
* ``wor_chain``: the old full chain ``core.alpha_wor_chain_with_order`` (only with ``--chain``;
  it is ~100x the sort),

and the without-replacement values are checked against the numpy path (``_prefix_wor``) on the
same rows: every row whose error estimate is finite must be within the sum of its estimate and
the numpy path's own bound, plus 1e-14 (exit status 1 otherwise).
``inside`` counts rows the first device pass vouches for (estimate below ``core.WOR_FAST_TOL``);
the API gives the others a second device pass (``WOR_FAST_RETRY``, timed as ``wor_retry`` when a
family has such rows) and numpy only after that.

Usage::

    python benchmarks/bench_jax_families.py               # V = 32k, 128k; n = 4, 8, 16; B = 4
    python benchmarks/bench_jax_families.py --quick       # V = 32k, n = 4, 16
    python benchmarks/bench_jax_families.py --table benchmarks/results/bench_jax_families.json

Writes ``benchmarks/results/bench_jax_families.json`` (machine, device, load average, JAX version).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import zlib
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import families

OUT = Path(__file__).resolve().parent / "results" / "bench_jax_families.json"


def best(fn: Any, reps: int) -> float:
    import jax

    jax.block_until_ready(fn())  # compile
    t = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        t = min(t, time.perf_counter() - t0)
    return t


def run(
    vs: list[int],
    ns: list[int],
    B: int,
    reps: int,
    names: list[str],
    real: bool,
    chain: bool,
    chain_families: list[str] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    import jax
    import jax.numpy as jnp

    from spectheory.solvers.jax_backend import core
    from spectheory.solvers.jax_backend.bucketed import alpha_iid_bucketed
    from spectheory.solvers.jax_backend.solve import x64
    from spectheory.solvers.jax_backend.wor_moments import WOR_FAST_RETRY, alpha_wor_fast
    from spectheory.solvers.prefix import _prefix_wor

    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    cases: list[tuple[str, int, np.ndarray, np.ndarray]] = []
    for V in vs:
        for nm in names:
            rng = np.random.default_rng(zlib.crc32(f"{nm}/{V}".encode()))
            pairs = [families.FAMILIES[nm](rng, V) for _ in range(B)]
            cases.append((nm, V, np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])))
    if real:
        rr = families.real_rows()
        for draft in ("skip", "quant", "ngram"):
            sel = [(p, q) for lb, p, q in rr if f"_{draft}_" in lb][:B]
            if sel:
                P = np.array([a for a, _ in sel])
                Q = np.array([b for _, b in sel])
                cases.append((f"smollm2_{draft}", P.shape[1], P, Q))
    with x64():
        for nm, V, P, Q in cases:
            pj, qj = jnp.asarray(P), jnp.asarray(Q)
            r = jnp.where(qj > 0, pj / jnp.where(qj > 0, qj, 1.0), jnp.inf)
            t_sort = best(lambda r=r: jnp.sort(r, axis=-1), reps)
            for n in ns:
                if (Q > 0).sum(1).min() < n:
                    continue
                t_is = best(partial(core.alpha_iid, pj, qj, n), reps)
                t_ib = best(partial(alpha_iid_bucketed, pj, qj, n), reps)
                t_w = best(partial(alpha_wor_fast, pj, qj, n), reps)
                out = alpha_wor_fast(pj, qj, n)
                v = np.asarray(out.value)
                e = np.asarray(out.error)
                inside = e <= core.WOR_FAST_TOL
                row: dict[str, Any] = {
                    "family": nm, "V": V, "n": n, "B": B,
                    "sort_s": t_sort, "iid_sort_s": t_is, "iid_bucketed_s": t_ib,
                    "wor_fast_s": t_w, "inside": int(inside.sum()),
                }  # fmt: skip
                if not inside.all():
                    t_r = best(partial(alpha_wor_fast, pj, qj, n, **WOR_FAST_RETRY), reps)
                    o2 = alpha_wor_fast(pj, qj, n, **WOR_FAST_RETRY)
                    e2 = np.asarray(o2.error)
                    row["wor_retry_s"] = t_r
                    row["inside_after_retry"] = int((inside | (e2 <= core.WOR_FAST_TOL)).sum())
                    v = np.where(inside, v, np.asarray(o2.value))
                    e = np.where(inside, e, e2)
                if chain and (not chain_families or nm in chain_families):
                    row["wor_chain_s"] = best(
                        partial(core.alpha_wor_chain_with_order, pj, qj, n), reps
                    )
                ref = np.empty(len(P))
                ref_err = np.empty(len(P))
                for b in range(len(P)):
                    info: dict[str, Any] = {}
                    ref[b] = _prefix_wor(P[b : b + 1], Q[b : b + 1], n, info)[0][0]
                    ref_err[b] = float(info.get("error_bound", 0.0))
                fin = np.isfinite(e)
                diff = np.abs(v - ref)
                row["max_diff"] = float(np.max(diff[fin], initial=0.0))
                row["max_estimate"] = float(np.max(e[fin], initial=0.0))
                row["max_numpy_bound"] = float(np.max(ref_err))
                # within the sum of the two reported bounds (plus rounding)
                if np.any(diff[fin] > e[fin] + ref_err[fin] + 1e-14):
                    failures.append(f"{nm} V={V} n={n}: diff {diff[fin].max():.3g} > bounds")
                row["wor_over_iid_bucketed"] = t_w / t_ib
                row["wor_over_iid_sort"] = t_w / t_is
                row["wor_over_sort"] = t_w / t_sort
                row["iid_bucketed_over_sort"] = t_ib / t_sort
                rows.append(row)
                print(
                    f"{nm:16s} V={V:6d} n={n:2d}  sort {t_sort * 1e3:7.2f} ms  iid sort/bucketed "
                    f"{t_is * 1e3:7.2f}/{t_ib * 1e3:6.2f}  wor {t_w * 1e3:7.2f} ms  "
                    f"x iid_b {t_w / t_ib:5.1f}  x iid_s {t_w / t_is:4.1f}  x sort {t_w / t_sort:4.1f}"
                    f"  inside {row['inside']}/{B}"
                    + (f" (+retry {row['inside_after_retry']})" if "wor_retry_s" in row else ""),
                    flush=True,
                )
    _ = jax
    return rows, failures


def worst_table(rows: list[dict[str, Any]]) -> list[str]:
    """Per (V, n): the worst family of each ratio and the rows the device answered."""
    out = [
        "| V | n | WOR / iid (bucketed), worst | family | WOR / iid (sort), worst | family | "
        "WOR / sort, worst | rows on the device (both passes) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["V"], r["n"]) for r in rows})
    summ = []
    for V, n in keys:
        rs = [r for r in rows if r["V"] == V and r["n"] == n]
        a = max(rs, key=lambda r: r["wor_over_iid_bucketed"])
        b = max(rs, key=lambda r: r["wor_over_iid_sort"])
        c = max(rs, key=lambda r: r["wor_over_sort"])
        dev = sum(r.get("inside_after_retry", r["inside"]) for r in rs)
        tot = sum(r["B"] for r in rs)
        summ.append((a["wor_over_iid_bucketed"], V, n, a, b, c, dev, tot))
    for w, V, n, a, b, c, dev, tot in sorted(summ, key=lambda x: -x[0]):
        out.append(
            f"| {V} | {n} | {w:.1f} | {a['family']} | {b['wor_over_iid_sort']:.2f} | "
            f"{b['family']} | {c['wor_over_sort']:.2f} | {dev}/{tot} |"
        )
    return out


def markdown(path: str) -> str:
    d = json.loads(Path(path).read_text())
    rows = sorted(d["rows"], key=lambda r: -r["wor_over_iid_bucketed"])
    out = [
        f"Machine: {d['machine']}, device {d['device']}, JAX {d['jax']}, load average "
        f"{d['loadavg_before']} -> {d['loadavg_after']}; B = {d['B']} rows per batch, best of "
        f"{d['reps']}.",
        "",
        *worst_table(d["rows"]),
        "",
        "| family | V | n | WOR / iid (bucketed) | WOR / iid (sort) | WOR / sort | "
        "iid bucketed / sort | old chain / new | inside (1st pass / after retry) | retry pass / "
        "1st | max diff | max estimate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ins = f"{r['inside']}/{r['B']}"
        if "inside_after_retry" in r:
            ins += f" / {r['inside_after_retry']}"
        out.append(
            f"| {r['family']} | {r['V']} | {r['n']} | {r['wor_over_iid_bucketed']:.1f} | "
            f"{r['wor_over_iid_sort']:.2f} | {r['wor_over_sort']:.2f} | "
            f"{r['iid_bucketed_over_sort']:.2f} | "
            + (f"{r['wor_chain_s'] / r['wor_fast_s']:.1f}" if "wor_chain_s" in r else "")
            + f" | {ins} | "
            + (f"{r['wor_retry_s'] / r['wor_fast_s']:.1f}" if "wor_retry_s" in r else "")
            + f" | {r['max_diff']:.1e} | "
            f"{r['max_estimate']:.1e} |"
        )
    if d.get("failures"):
        out += ["", "Failed checks: " + "; ".join(d["failures"])]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--vs", default=None)
    ap.add_argument("--ns", default=None)
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--families", default=None)
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--chain", action="store_true", help="also time the old full chain")
    ap.add_argument("--chain-families", default=None, help="only these families for --chain")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--table", default=None, help="print the markdown table of a result JSON")
    a = ap.parse_args()
    if a.table:
        print(markdown(a.table))
        return 0
    import jax

    vs = [int(x) for x in a.vs.split(",")] if a.vs else ([32768] if a.quick else [32768, 131072])
    ns = [int(x) for x in a.ns.split(",")] if a.ns else ([4, 16] if a.quick else [4, 8, 16])
    names = a.families.split(",") if a.families else list(families.FAMILIES)
    load0 = os.getloadavg()
    cf = a.chain_families.split(",") if a.chain_families else None
    rows, failures = run(vs, ns, a.B, a.reps, names, not a.no_real, a.chain, cf)
    res = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "B": a.B,
        "reps": a.reps,
        "rows": rows,
        "failures": failures,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(markdown(a.out))
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
