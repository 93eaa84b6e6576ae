"""Fast paths on every distribution family (``benchmarks/families.py``): worst case first.

For each vocabulary size V, number of drafts n and family (plus rows of real SmolLM2 logits at
their native V = 49,152), one row ``(p, q)`` is timed, interleaving best-of-k repetitions of

* ``argsort``: one ``np.argsort`` of the row's ratios ``p/q`` (the i.i.d. goal's unit),
* ``iid``: exact alpha* for i.i.d. drafts, ``prefix_iid_fast`` (what ``method="prefix"`` runs),
* ``wor``: exact alpha* without replacement, ``spectheory.solvers.prefix._prefix_wor`` (the
  bucketed fast path, falling back to the reference chain on the rows it declines),

and every timed value is checked against the reference method on the same row: the full-sort
prefix chain for i.i.d. (agreement within ``(n + 2) V eps``, the documented tolerance of
``tests/test_fastprefix.py``) and the full stable sort + ``wor_chain`` for without replacement
(agreement within both reported error bounds + 1e-14, and within the 1e-10 contract). A row that
fails a check is reported and makes the script exit non-zero: no speed comes from a wrong number.

The printed tables (and ``benchmarks/results/bench_families.json``) give, per (V, n), the WORST
family for i.i.d. / argsort and for WOR / i.i.d., and the fraction of rows where the WOR fast path
declined: neither the bucketed fast path (``info["fast_rows"]``) nor the small-support chain
(``info["support_rows"]``: drafts with at most 2048 positive entries) answered, so the reference
chain on the full sort ran. The ``path`` column: F fast path, S small support, R reference.

Usage::

    python benchmarks/bench_families.py              # V = 32k, 128k, 256k; n = 2, 4, 8, 16
    python benchmarks/bench_families.py --quick      # V = 32k, n = 2, 8, few reps (CI-sized)
    python benchmarks/bench_families.py --families temp_0.01,ngram --vs 131072 --ns 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import families

from spectheory.solvers.fastprefix import prefix_iid_fast, prefix_iid_reference
from spectheory.solvers.prefix import _prefix_wor, prefix_order
from spectheory.solvers.wor import wor_chain

LOAD_START = list(os.getloadavg())
EPS = float(np.finfo(np.float64).eps)
#: Without-replacement contract (docs/without_replacement.md).
WOR_CONTRACT = 1e-10


def ref_wor(p: np.ndarray, q: np.ndarray, n: int) -> tuple[float, float]:
    """alpha* and error bound of the reference evaluator (full stable sort + wor_chain)."""
    order = prefix_order(p[None, :], q[None, :])[0]
    ch = wor_chain(q[order], n)
    f = np.concatenate([[1.0], 1.0 + np.cumsum(p[order]) - ch.Q])
    return float(f.min()), float(np.max(ch.error, initial=0.0))


def time_row(p: np.ndarray, q: np.ndarray, n: int, reps: int, wor: bool) -> dict[str, Any]:
    """Interleaved best-of-``reps`` times of argsort, i.i.d. and (if ``wor``) WOR on one row."""
    p2, q2 = p[None, :], q[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = p / q
    # a generic row of the same length (distinct random ratios): the unit that does not depend
    # on the family (argsort of a row with few distinct ratios is several times faster)
    rnd = np.random.default_rng(p.size).random(p.size)
    best = {"argsort": np.inf, "argsort_rand": np.inf, "iid": np.inf, "wor": np.inf}
    out: dict[str, Any] = {}
    for _ in range(reps):
        t0 = time.perf_counter()
        np.argsort(r)
        t1 = time.perf_counter()
        v_iid, _ = prefix_iid_fast(p2, q2, n)
        t2 = time.perf_counter()
        np.argsort(rnd)
        t2b = time.perf_counter()
        best["argsort_rand"] = min(best["argsort_rand"], t2b - t2)
        best["argsort"] = min(best["argsort"], t1 - t0)
        best["iid"] = min(best["iid"], t2 - t1)
        out["iid_value"] = float(v_iid[0])
        if wor:
            info: dict[str, Any] = {}
            t3 = time.perf_counter()
            v_wor, _ = _prefix_wor(p2, q2, n, info)
            t4 = time.perf_counter()
            best["wor"] = min(best["wor"], t4 - t3)
            out["wor_value"] = float(v_wor[0])
            out["wor_fast_rows"] = int(info["fast_rows"])
            out["wor_support_rows"] = int(info.get("support_rows", 0))
            out["wor_path"] = "F" if out["wor_fast_rows"] else ("S" if out["wor_support_rows"] else "R")
            out["wor_error_bound"] = float(info["error_bound"])
            out["wor_quad_nodes"] = int(info["quad_nodes"])
            # time budget: a declined row can take seconds; stop early (best of fewer)
            if t4 - t3 > 2.0:
                break
    out.update({f"{k}_s": v for k, v in best.items() if np.isfinite(v)})
    return out


def check_row(p: np.ndarray, q: np.ndarray, n: int, row: dict[str, Any], wor: bool) -> list[str]:
    """Compare the timed values with the reference methods; returns the failures."""
    bad = []
    V = p.size
    vr, _ = prefix_iid_reference(p[None, :], q[None, :], n)
    row["iid_ref"] = float(vr[0])
    row["iid_diff"] = abs(row["iid_value"] - float(vr[0]))
    if not row["iid_diff"] <= max(1e-15, (n + 2) * V * EPS):
        bad.append(f"iid diff {row['iid_diff']:.3g}")
    if wor:
        t0 = time.perf_counter()
        wr, werr = ref_wor(p, q, n)
        row["wor_ref_s"] = time.perf_counter() - t0
        row["wor_ref"] = wr
        row["wor_ref_error"] = werr
        row["wor_diff"] = abs(row["wor_value"] - wr)
        tol = row["wor_error_bound"] + werr + 1e-14
        if not (row["wor_diff"] <= tol and row["wor_diff"] <= WOR_CONTRACT):
            bad.append(f"wor diff {row['wor_diff']:.3g} > {tol:.3g}")
    return bad


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Worst family per (V, n) for each ratio, and the WOR decline fraction."""
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["V"], r["n"]), []).append(r)
    out = []
    for (V, n), rs in sorted(groups.items()):
        s: dict[str, Any] = {"V": V, "n": n, "rows": len(rs)}
        ia = max(rs, key=lambda r: r["iid_s"] / r["argsort_s"])
        s["iid_over_argsort_worst"] = ia["iid_s"] / ia["argsort_s"]
        s["iid_over_argsort_family"] = ia["family"]
        s["iid_over_argsort_median"] = float(np.median([r["iid_s"] / r["argsort_s"] for r in rs]))
        ir = max(rs, key=lambda r: r["iid_s"] / r["argsort_rand_s"])
        s["iid_over_argsort_rand_worst"] = ir["iid_s"] / ir["argsort_rand_s"]
        s["iid_over_argsort_rand_family"] = ir["family"]
        ws = [r for r in rs if "wor_s" in r]
        if ws:
            wi = max(ws, key=lambda r: r["wor_s"] / r["iid_s"])
            s["wor_over_iid_worst"] = wi["wor_s"] / wi["iid_s"]
            s["wor_over_iid_family"] = wi["family"]
            s["wor_worst_ms"] = wi["wor_s"] * 1e3
            s["wor_over_iid_median"] = float(np.median([r["wor_s"] / r["iid_s"] for r in ws]))
            dec = [r["family"] for r in ws if r["wor_path"] == "R"]
            s["wor_declined_fraction"] = len(dec) / len(ws)
            s["wor_declined"] = dec
        s["failures"] = sum(1 for r in rs if r["failures"])
        out.append(s)
    return out


def markdown(paths: list[str]) -> str:
    """Markdown tables (worst case first, then family by family) from result JSONs."""
    rows: list[dict[str, Any]] = []
    loads = []
    for pth in paths:
        d = json.loads(Path(pth).read_text())
        rows += d["rows"]
        loads.append((d["meta"].get("loadavg_start"), d["meta"].get("loadavg_end")))
    summ = summarise(rows)
    out = [f"Load averages (start, end) of the runs: {loads}", ""]
    out.append("| V | n | i.i.d. / argsort(row), worst | family | i.i.d. / argsort(generic row), worst "
               "| family | WOR / i.i.d., worst | family | WOR worst (ms) | declined |")
    out.append("|---:|---:|---:|---|---:|---|---:|---|---:|---:|")
    for s in sorted(summ, key=lambda s: -s.get("wor_over_iid_worst", 0.0)):
        out.append(
            f"| {s['V']} | {s['n']} | {s['iid_over_argsort_worst']:.2f} | {s['iid_over_argsort_family']} "
            f"| {s['iid_over_argsort_rand_worst']:.2f} | {s['iid_over_argsort_rand_family']} "
            f"| {s.get('wor_over_iid_worst', float('nan')):.1f} | {s.get('wor_over_iid_family', '-')} "
            f"| {s.get('wor_worst_ms', float('nan')):.1f} "
            f"| {s.get('wor_declined_fraction', float('nan')):.2f} |"
        )
    fams = sorted({r["family"] for r in rows})
    keys = sorted({(r["V"], r["n"]) for r in rows})
    out += ["", "WOR / i.i.d. per family (path: F fast, S small support, R reference):", ""]
    out.append("| family | " + " | ".join(f"{V // 1024}k n={n}" for V, n in keys) + " |")
    out.append("|---|" + "---:|" * len(keys))
    worst_fam = {f: max((r["wor_s"] / r["iid_s"] for r in rows if r["family"] == f and "wor_s" in r),
                        default=0.0) for f in fams}
    for f in sorted(fams, key=lambda f: -worst_fam[f]):
        cells = []
        for V, n in keys:
            rs = [r for r in rows if r["family"] == f and r["V"] == V and r["n"] == n and "wor_s" in r]
            if not rs:
                cells.append("")
                continue
            w = max(rs, key=lambda r: r["wor_s"] / r["iid_s"])
            cells.append(f"{w['wor_s'] / w['iid_s']:.1f} {w['wor_path']}")
        out.append(f"| {f} | " + " | ".join(cells) + " |")
    out += ["", "i.i.d. / argsort(row) per family (worst over n):", ""]
    Vs = sorted({r["V"] for r in rows})
    out.append("| family | " + " | ".join(f"{V}" for V in Vs) + " |")
    out.append("|---|" + "---:|" * len(Vs))
    for f in fams:
        cells = []
        for V in Vs:
            rs = [r for r in rows if r["family"] == f and r["V"] == V]
            cells.append(f"{max(r['iid_s'] / r['argsort_s'] for r in rs):.2f}" if rs else "")
        out.append(f"| {f} | " + " | ".join(cells) + " |")
    nbad = sum(1 for r in rows if r["failures"])
    dmax = max((r.get("wor_diff", 0.0) for r in rows), default=0.0)
    imax = max((r.get("iid_diff", 0.0) for r in rows), default=0.0)
    out += ["", f"Rows: {len(rows)}; failed checks: {nbad}; largest |WOR - reference| {dmax:.1e}, "
            f"largest |i.i.d. - reference| {imax:.1e}."]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--vs", default=None, help="comma-separated V (default 32768,131072,262144)")
    ap.add_argument("--ns", default=None, help="comma-separated n (default 2,4,8,16)")
    ap.add_argument("--families", default=None, help="comma-separated family names (default all)")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--no-real", action="store_true", help="skip the SmolLM2 rows")
    ap.add_argument("--no-wor", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--table", nargs="+", default=None, help="print markdown tables of result JSONs")
    args = ap.parse_args()
    if args.table:
        print(markdown(args.table))
        return 0
    default_vs = [32768] if args.quick else [32768, 131072, 262144]
    Vs = [int(v) for v in args.vs.split(",")] if args.vs else default_vs
    ns = [int(v) for v in args.ns.split(",")] if args.ns else ([2, 8] if args.quick else [2, 4, 8, 16])
    names = args.families.split(",") if args.families else list(families.FAMILIES)
    reps = args.reps or (3 if args.quick else 7)
    wor = not args.no_wor
    cases: list[tuple[str, int, np.ndarray, np.ndarray]] = []
    for V in Vs:
        for name in names:
            p, q = families.make(name, V)
            cases.append((name, V, p, q))
    if not args.no_real and not args.families:
        # 3 of the 6 stored positions per draft and temperature (18 rows); --quick: 3 rows
        real = families.real_rows()
        real = real[::12] if args.quick else [r for i, r in enumerate(real) if (i // 2) % 2 == 0]
        cases += [(label, p.size, p, q) for label, p, q in real]
    rows = []
    nfail = 0
    t_start = time.time()
    print(f"{'family':28s} {'V':>7s} {'n':>3s} {'argsort':>8s} {'iid':>8s} {'iid/as':>6s} "
          f"{'wor':>9s} {'wor/iid':>7s} path  bound    |wor-ref| check", flush=True)
    for name, V, p, q in cases:
        for n in ns:
            w = wor and int(np.count_nonzero(q)) >= n
            # (V >= 256k: fewer repetitions; the rows are slower and the ratios stabler)
            row = time_row(p, q, n, max(2, reps // 2) if V >= 262144 else reps, w)
            row.update({"family": name.split("_pos")[0] if name.startswith("smollm2") else name,
                        "case": name, "V": V, "n": n})
            bad = check_row(p, q, n, row, w)
            row["failures"] = bad
            nfail += bool(bad)
            rows.append(row)
            wor_s = row.get("wor_s", float("nan"))
            print(f"{name:28s} {V:7d} {n:3d} {row['argsort_s'] * 1e3:8.2f} {row['iid_s'] * 1e3:8.2f} "
                  f"{row['iid_s'] / row['argsort_s']:6.2f} {wor_s * 1e3:9.2f} {wor_s / row['iid_s']:7.1f} "
                  f"{row.get('wor_path', '-')!s:>4s}  {row.get('wor_error_bound', 0.0):.1e} "
                  f"{row.get('wor_diff', 0.0):.1e} {'FAIL ' + '; '.join(bad) if bad else 'ok'}", flush=True)
    summary = summarise(rows)
    print("\nWorst case over families (ratios measured in one interleaved run per row):")
    print(f"{'V':>7s} {'n':>3s} {'iid/argsort worst':>18s} {'family':>16s} {'iid/rand-argsort':>16s} "
          f"{'family':>16s} {'WOR/iid worst':>14s} {'family':>16s} {'declined':>8s}")
    for s in summary:
        print(f"{s['V']:7d} {s['n']:3d} {s['iid_over_argsort_worst']:18.2f} "
              f"{s['iid_over_argsort_family']:>16s} {s['iid_over_argsort_rand_worst']:16.2f} "
              f"{s['iid_over_argsort_rand_family']:>16s} "
              f"{s.get('wor_over_iid_worst', float('nan')):14.1f} {s.get('wor_over_iid_family', '-'):>16s} "
              f"{s.get('wor_declined_fraction', float('nan')):8.2f}")
    out = Path(args.out) if args.out else families.RESULTS / (
        "bench_families_quick.json" if args.quick else "bench_families.json")
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (2-core CPU under load: other jobs ran)",
        "loadavg_start": LOAD_START,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "reps": reps,
        "wall_s": time.time() - t_start,
    }
    meta["loadavg_end"] = list(os.getloadavg())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1, default=float))
    print(f"\nwrote {out}; load average {os.getloadavg()}; failures: {nfail}")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
