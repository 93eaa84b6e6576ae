"""Audit demo (issue 15): the numbers and the frontier plot of docs/audit.md.

1. Block level: transformers' own speculative sampling on a Markov pair, without and with its
   ensemble verification; spectheory's decoder; exact TV of every rule's first two tokens.
2. Token level: every spectheory verifier, the lossy rules and two broken rules.
3. The acceptance-bias frontier on SmolLM2-135M logits (target: the model; draft: 8 of 30 layers
   skipped), with the lossy rules placed on it -> docs/img/audit_frontier.png.

    .venv/bin/python examples/audit_demo.py            # tables 1 and 2 (seconds)
    .venv/bin/python examples/audit_demo.py --plot     # also 3: loads SmolLM2, rewrites the PNG
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import spectheory as st
from spectheory import verifiers as V
from spectheory.audit import (
    audit,
    audit_decoder,
    decoder_law,
    exact_audit,
    frontier_closed,
    law_tv,
    sample_size,
    sequence_law,
)
from spectheory.audit import subjects as S
from spectheory.blocks import Chain
from spectheory.verifiers.lossy import Ensemble

P6 = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
Q6 = np.array([0.1, 0.2, 0.3, 0.2, 0.1, 0.1])


def block_level() -> None:
    target, draft = S.builtin_models()
    want = sequence_law(target, 2)
    print(f"transformers {S.transformers_version()}: _speculative_sampling, gamma = 2, L = 2")
    print("| decoder | exact TV | measured TV [99% interval] | p-value | samples | verdict |")
    print("|---|---|---|---|---|---|")
    rows = [
        ("transformers", S.transformers_decoder(2), "sd"),
        ("transformers, ensemble w=0.5", S.transformers_decoder(2, 0.5), Ensemble(0.5)),
        ("transformers, ensemble w=0.8", S.transformers_decoder(2, 0.8), Ensemble(0.8)),
        ("spectheory decode, sd", S.spectheory_decoder(Chain(2), "sd"), "sd"),
        ("spectheory decode, rrs", S.spectheory_decoder(Chain(2), "rrs"), "rrs"),
    ]
    for label, dec, rule in rows:
        exact = float(law_tv(decoder_law(target, draft, Chain(2), rule, 2), want))
        r = audit_decoder(dec, target, draft, num_tokens=2, tv=0.05, seed=1)
        lo, hi = r.tv_interval
        print(f"| {label} | {exact:.4f} | {r.tv:.4f} [{lo:.4f}, {hi:.4f}] | {r.pvalue:.3g} | "
              f"{r.samples} | {r.status.name} |")


def token_level() -> None:
    print("\n| rule | n | exact TV | measured TV [99% interval] | acceptance (exact) | alpha* |"
          " samples | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    cases = [("sd", 1), ("rrs", 2), ("rrs_wor", 2), ("kseq", 2), ("greedy", 2), ("spechub", 2),
             ("khisti", 2), ("optimal", 2), ("naive", 2), ("ensemble", 1), ("typical", 2),
             ("exact_match", 1), ("onehot_draft", 1)]
    for name, n in cases:
        rule = V.get(name)()
        ex = exact_audit(rule, P6, Q6, n)
        tv = max(float(ex.tv), 0.05)
        r = audit(S.verifier_sampler(rule, P6, Q6), P6, rule.scheme(Q6, n), tv=tv, seed=1)
        lo, hi = r.tv_interval
        print(f"| {name} | {n} | {float(ex.tv):.4f} | {r.tv:.4f} [{lo:.4f}, {hi:.4f}] | "
              f"{r.acceptance:.3f} ({float(ex.acceptance):.3f}) | {r.alpha_star:.3f} | "
              f"{r.samples} | {r.status.name} |")
    print("\n| broken rule | exact TV | planned samples | measured TV [99% interval] | p-value |"
          " verdict | sequential: samples, verdict |")
    print("|---|---|---|---|---|---|---|")
    for label, smp, law in [
        ("ignores q", S.ignores_q_sampler, S.ignores_q_law),
        ("residual not renormalised", S.unnormalised_residual_sampler,
         S.unnormalised_residual_law),
    ]:
        exact = 0.5 * float(np.abs(law(P6, Q6) - P6).sum())
        r = audit(smp(P6, Q6), P6, st.IID(Q6, 1), tv=exact, seed=11)
        s = audit(smp(P6, Q6), P6, st.IID(Q6, 1), tv=exact, seed=11, sequential=True)
        lo, hi = r.tv_interval
        assert r.planned_samples == sample_size(exact, 6, 0.01, 0.99, P6.min())
        print(f"| {label} | {exact:.4f} | {r.planned_samples} | {r.tv:.4f} [{lo:.4f}, {hi:.4f}] |"
              f" {r.pvalue:.2g} | {r.status.name} | {s.samples}, {s.status.name} |")


def frontier_plot(path: Path) -> None:
    from spectheory.models import next_token_logits, smollm2_pairs

    target, draft, tok, label = smollm2_pairs("skip", skip=4)
    ids = tok.encode("The theory of speculative sampling says that the output of the target model")
    lp = next_token_logits(target, ids)
    lq = next_token_logits(draft, ids)

    def soft(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    P, Q = soft(lp), soft(lq)
    # the position whose single-draft acceptance is closest to 0.6 (a typical, non-trivial one)
    pos = int(np.argmin([abs(np.minimum(P[t], Q[t]).sum() - 0.6) for t in range(len(P))]))
    p, q = P[pos], Q[pos]
    eps = np.linspace(0, 0.85, 171)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    for n, style in [(1, "-"), (2, "--")]:
        ax.plot(eps, frontier_closed(p, st.IID(q, n), eps), style, color="k",
                label=f"frontier, {n} i.i.d. draft{'s' if n > 1 else ''}")
    print(f"\nSmolLM2 position {pos} ({label}): sum min(p, q) = {np.minimum(p, q).sum():.4f}")
    print("| rule | n | bias (TV) | acceptance | frontier at that bias |")
    print("|---|---|---|---|---|")
    marks = {"exact_match": "o", "onehot_draft": "s", "typical": "^", "ensemble": "D"}
    rules = [("exact_match", V.get("exact_match")(), 1), ("exact_match", V.get("exact_match")(), 2),
             ("onehot_draft", V.get("onehot_draft")(), 1), ("typical", V.get("typical")(), 1),
             ("typical", V.get("typical")(), 2)]
    rules += [("ensemble", Ensemble(w), 1) for w in (0.25, 0.5, 0.75)]
    for name, r, n in rules:
        b, a = float(r.bias(p, q, n)), float(r.acceptance(p, q, n))
        sch = r.scheme(q, n)
        fr = float(frontier_closed(p, sch, b))
        tag = f"{name}" + (f" w={r.weight}" if name == "ensemble" else "")
        print(f"| {tag} | {n} | {b:.4f} | {a:.4f} | {fr:.4f} |")
        color = {"exact_match": "C0", "onehot_draft": "C1", "typical": "C2"}.get(
            name, {0.25: "C3", 0.5: "C4", 0.75: "C5"}.get(getattr(r, "weight", 0), "C6"))
        ax.scatter([b], [a], marker=marks[name], s=55, label=f"{tag}, n={n}",
                   facecolors="none" if n == 2 else color, edgecolors=color)
    for n in (1, 2):
        ax.scatter([0], [float(st.optimal_acceptance(p, st.IID(q, n)).value)], color="k",
                   marker="*", s=80)
    ax.set_xlabel("bias: total variation of the output from p")
    ax.set_ylabel("acceptance")
    ax.set_title(f"Acceptance-bias frontier on SmolLM2 logits (draft: {label.split(', ')[-1]})",
                 fontsize=10)
    ax.set_xlim(-0.01, 0.85)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print("wrote", path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plot", action="store_true",
                    help="also draw the SmolLM2 frontier plot into docs/img (loads the model)")
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args()
    if not args.plot_only:
        block_level()
        token_level()
    if args.plot or args.plot_only:
        frontier_plot(Path(__file__).resolve().parents[1] / "docs" / "img" / "audit_frontier.png")


if __name__ == "__main__":
    main()
