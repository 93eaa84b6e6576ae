"""Ablation of the JAX i.i.d. prefix core on the device: which part costs what.

Times (median of 7, after warm-up) at B x V = 1024 x 131072 float32 (and 256 x 262144):
``jnp.sort(p)``, ``jnp.argsort(p/q)``, the shipped ``core.alpha_iid`` (compensated and plain), and
variants of the sort step (argsort + gathers; key/index sort + gathers; one sort carrying p and q).
Prints one JSON line per variant and writes ``<out>/gpu_variants.json``.

Appended: the sort-free ``bucketed.alpha_iid_bucketed`` (n = 4, default capacity ``V // 16``; also
one mantissa bit fewer / more, plain float32 bucket sums ``split_sums=False``, and the forced
full-sort fallback ``capacity=1``), each first checked
against ``core.alpha_iid`` on the same data (max abs value difference, fraction of equal prefix
lengths, candidate tokens per row, printed as ``check`` rows; asserted below
``BUCKETED_CHECK_ATOL``). Needs only numpy + jax.

    PYTHONPATH=. python benchmarks/gpu_variants.py --out DIR
    PYTHONPATH=. python benchmarks/gpu_variants.py --out DIR --quick  # seconds: 4 x 32768, bucketed
    PYTHONPATH=. python benchmarks/gpu_variants.py --out DIR --bucketed-only --shapes 2x131072
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax
import jax.numpy as jnp
from bench_jax import timeit  # same directory (the script's own folder is on sys.path)
from jax import lax

from spectheory.solvers.jax_backend import bucketed, core

#: Bucketed vs core on float32 inputs: each is within FLOAT32_ERROR_BOUND = 1e-6 of the exact
#: value (docs/jax.md), so they differ by at most twice that.
BUCKETED_CHECK_ATOL = 2e-6


def ratio(p, q):
    pos = q > 0
    return jnp.where(pos, p / jnp.where(pos, q, 1), jnp.inf)


def finish(ps, qs, n, comp):
    if comp:
        P = core._cumsum(ps, True)
        S = core._cumsum(qs, True)
    else:
        P = jnp.cumsum(ps, axis=-1)
        S = jnp.cumsum(qs, axis=-1)
    chain = 1.0 + P - jnp.minimum(S, 1.0) ** n
    k = jnp.argmin(chain, axis=-1)
    return jnp.minimum(jnp.min(chain, axis=-1), 1.0), k


def v_argsort_gather(p, q, n=4, comp=False):
    o = jnp.argsort(ratio(p, q), axis=-1)
    return finish(jnp.take_along_axis(p, o, -1), jnp.take_along_axis(q, o, -1), n, comp)


def v_keyidx_gather(p, q, n=4, comp=False):
    r = ratio(p, q)
    idx = lax.broadcasted_iota(jnp.int32, r.shape, 1)
    _, o = lax.sort((r, idx), dimension=1, num_keys=1, is_stable=False)
    return finish(jnp.take_along_axis(p, o, -1), jnp.take_along_axis(q, o, -1), n, comp)


def v_sort_pq(p, q, n=4, comp=False):
    r = ratio(p, q)
    _, ps, qs = lax.sort((r, p, q), dimension=1, num_keys=1, is_stable=False)
    return finish(ps, qs, n, comp)


def v_sort_key_only_then_q(p, q, n=4, comp=False):
    # sort (r, q): p recovered as r * q (exact only up to rounding; timing only)
    r = ratio(p, q)
    rs, qs = lax.sort((r, q), dimension=1, num_keys=1, is_stable=False)
    ps = jnp.where(jnp.isfinite(rs), rs * qs, 0.0)
    return finish(ps, qs, n, comp)


def bucketed_cases(V, quick=False):
    """The appended bucketed variants: name -> keyword arguments of alpha_iid_bucketed."""
    m = bucketed.default_mantissa_bits(V)
    kws = {"bucketed": {}}
    if not quick:
        kws[f"bucketed m={m - 1}"] = {"mantissa_bits": m - 1}
        kws[f"bucketed m={m + 1}"] = {"mantissa_bits": m + 1}
        kws["bucketed split_sums=False"] = {"split_sums": False}
    kws["bucketed forced fallback (capacity=1)"] = {"capacity": 1}
    return kws


def check_bucketed(p, q, kw, n=4):
    """Bucketed vs core.alpha_iid on the same data; raises if the values differ too much."""
    out = bucketed.alpha_iid_bucketed_info(p, q, n, **kw)
    vc, kc = core.alpha_iid(p, q, n)
    diff = float(jnp.max(jnp.abs(out.value - vc)))
    return {
        "max_abs_diff_vs_core": diff,
        "k_equal_fraction": float(jnp.mean((out.k == kc).astype(jnp.float32))),
        "max_candidates": int(jnp.max(out.num_candidates)),
        "mean_candidates": float(jnp.mean(out.num_candidates.astype(jnp.float32))),
        "overflow": bool(out.overflow),
        "ok": diff <= BUCKETED_CHECK_ATOL,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--quick", action="store_true", help="small shapes, finishes in seconds")
    ap.add_argument("--bucketed-only", action="store_true",
                    help="only jnp.sort(p), core.alpha_iid and the bucketed variants")
    ap.add_argument("--shapes", default=None,
                    help="comma-separated BxV list overriding the default shapes, e.g. 2x131072")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = []
    failed = []
    shapes = [(4, 32768)] if args.quick else [(1024, 131072), (256, 262144)]
    if args.shapes:
        shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    keep = ("jnp.sort(p)", "core.alpha_iid (compensated)")
    only_bucketed = args.bucketed_only or args.quick
    for B, V in shapes:
        k1, k2 = jax.random.split(jax.random.PRNGKey(0))
        base = jax.random.normal(k1, (B, V)) * 3.0
        p = jax.nn.softmax(base, -1)
        q = jax.nn.softmax(base + jax.random.normal(k2, (B, V)), -1)
        cases = {
            "jnp.sort(p)": jax.jit(lambda p, q: jnp.sort(p, axis=-1)),
            "jnp.argsort(p/q)": jax.jit(lambda p, q: jnp.argsort(ratio(p, q), axis=-1)),
            "core.alpha_iid (compensated)": jax.jit(lambda p, q: core.alpha_iid(p, q, 4)),
            "core.alpha_iid (plain)": jax.jit(lambda p, q: core.alpha_iid(p, q, 4, False)),
            "argsort+gather plain": jax.jit(lambda p, q: v_argsort_gather(p, q)),
            "argsort+gather comp": jax.jit(lambda p, q: v_argsort_gather(p, q, comp=True)),
            "key/idx sort+gather plain": jax.jit(lambda p, q: v_keyidx_gather(p, q)),
            "key/idx sort+gather comp": jax.jit(lambda p, q: v_keyidx_gather(p, q, comp=True)),
            "sort(r,p,q) unstable plain": jax.jit(lambda p, q: v_sort_pq(p, q)),
            "sort(r,q) comp": jax.jit(lambda p, q: v_sort_key_only_then_q(p, q, comp=True)),
        }
        if only_bucketed:
            cases = {k: v for k, v in cases.items() if k in keep}
        for name, kw in bucketed_cases(V, args.quick).items():
            chk = {"B": B, "V": V, "variant": name, "check": True}
            try:
                chk.update(check_bucketed(p, q, kw))
                if not chk["ok"]:
                    failed.append(chk)
            except Exception as exc:  # keep going
                chk["error"] = repr(exc)[:200]
            print(json.dumps(chk), flush=True)
            rows.append(chk)
            cases[name] = jax.jit(lambda p, q, kw=kw: bucketed.alpha_iid_bucketed(p, q, 4, **kw))
        for name, fn in cases.items():
            try:
                t = timeit(fn, p, q, reps=7)
                row = {"B": B, "V": V, "variant": name, "ms": t}
            except Exception as exc:  # keep going
                row = {"B": B, "V": V, "variant": name, "error": repr(exc)[:200]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    with open(os.path.join(args.out, "gpu_variants.json"), "w") as f:
        json.dump({"device": str(jax.devices()[0]), "jax": jax.__version__, "quick": args.quick,
                   "rows": rows}, f, indent=1)
    if failed:
        raise SystemExit(f"bucketed disagrees with core.alpha_iid: {failed}")


if __name__ == "__main__":
    main()
