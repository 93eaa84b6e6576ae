"""False-alarm rate of spectheory.audit on lossless rules, over many seeds (issue 15).

Each run audits a lossless implementation with a fresh seed at the default level 0.01 and
records whether the verdict is FAIL. A correct test has a false-alarm rate of at most about the
level (the Pearson test: about the level; the sequential mode: at most the level, usually below,
the SPRT's Ville bound being conservative). The rate is reported with a Clopper-Pearson 99%
interval. Also: the power of the audit against the ensemble rule at the predicted sample size.

    .venv/bin/python benchmarks/bench_audit_false_alarm.py [--seeds 1000] [--block-seeds 100]

Writes benchmarks/results/bench_audit_false_alarm.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy.stats import beta

import spectheory as st
from spectheory import verifiers as V
from spectheory.audit import Status, audit, audit_decoder
from spectheory.audit import subjects as S

P6 = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
Q6 = np.array([0.1, 0.2, 0.3, 0.2, 0.1, 0.1])


def clopper_pearson(k: int, n: int, conf: float = 0.99) -> tuple[float, float]:
    a = 1 - conf
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def rate(fn, seeds: range) -> dict:
    t = time.perf_counter()
    results = [fn(s) for s in seeds]
    fails = sum(r.status is Status.FAIL for r in results)
    n = len(results)
    lo, hi = clopper_pearson(fails, n)
    return {
        "runs": n, "fails": fails, "rate": fails / n, "ci99": [lo, hi],
        "samples_per_run": float(np.mean([r.samples for r in results])),
        "seconds": time.perf_counter() - t,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--block-seeds", type=int, default=100)
    args = ap.parse_args()
    seeds = range(10_000, 10_000 + args.seeds)
    out: dict = {"level": 0.01, "power": 0.99, "machine": platform.machine(),
                 "python": platform.python_version()}
    cases = {}
    for name, n in [("sd", 1), ("rrs", 2), ("optimal", 2)]:
        rule = V.get(name)()
        sch = rule.scheme(Q6, n)
        smp = S.verifier_sampler(rule, P6, Q6)
        cases[f"token/{name}/n={n}/fixed"] = rate(
            lambda s, smp=smp, sch=sch: audit(smp, P6, sch, tv=0.1, seed=s), seeds)
        cases[f"token/{name}/n={n}/sequential"] = rate(
            lambda s, smp=smp, sch=sch: audit(smp, P6, sch, tv=0.1, seed=s, sequential=True),
            seeds)
        print(name, cases[f"token/{name}/n={n}/fixed"], cases[f"token/{name}/n={n}/sequential"],
              flush=True)
    # a large vocabulary: binned tail (V = 4096, Zipf target)
    rng = np.random.default_rng(0)
    z = 1.0 / np.arange(1, 4097) ** 1.1
    pz = z / z.sum()
    qz = rng.permutation(pz) * 0.3 + pz * 0.7
    smp = S.verifier_sampler("sd", pz, qz)
    cases["token/sd/V=4096/fixed"] = rate(
        lambda s: audit(smp, pz, st.IID(qz, 1), tv=0.1, seed=s, alpha_star=None),
        range(20_000, 20_000 + args.seeds // 4))
    print("V=4096", cases["token/sd/V=4096/fixed"], flush=True)
    # block level: transformers' speculative sampling, no ensemble
    target, draft = S.builtin_models()
    dec = S.transformers_decoder(2)
    cases["block/transformers/fixed"] = rate(
        lambda s: audit_decoder(dec, target, draft, num_tokens=2, tv=0.1, seed=s),
        range(30_000, 30_000 + args.block_seeds))
    print("transformers", cases["block/transformers/fixed"], flush=True)
    # power: ensemble w = 0.5 at the sample size predicted for its exact TV
    from spectheory.audit import decoder_law, law_tv, sequence_law
    from spectheory.blocks import Chain
    from spectheory.verifiers.lossy import Ensemble

    exact = float(law_tv(decoder_law(target, draft, Chain(2), Ensemble(0.5), 2),
                         sequence_law(target, 2)))
    dec_e = S.transformers_decoder(2, 0.5)
    cases["block/transformers-ensemble0.5/power-at-exact-tv"] = rate(
        lambda s: audit_decoder(dec_e, target, draft, num_tokens=2, tv=exact, seed=s),
        range(40_000, 40_000 + args.block_seeds))
    cases["block/transformers-ensemble0.5/power-at-exact-tv"]["exact_tv"] = exact
    print("ensemble power", cases["block/transformers-ensemble0.5/power-at-exact-tv"], flush=True)
    out["cases"] = cases
    out["transformers"] = S.transformers_version()
    path = Path(__file__).parent / "results" / "bench_audit_false_alarm.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
