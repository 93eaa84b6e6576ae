"""``spectheory audit``: block-level audits of transformers' speculative sampling and of a chosen
spectheory rule on the built-in Markov models (:func:`spectheory.audit.subjects.builtin_models`),
so a user sees what a passing and a failing audit look like."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_audit_parser", "cmd_audit"]


def add_audit_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``audit`` subcommand on ``sub`` (the parser's subparsers)."""
    a = sub.add_parser(
        "audit", help="audit speculative decoders (transformers, spectheory) for losslessness",
        description="Block-level audits on built-in Markov models: the law of the first TOKENS "
                    "generated tokens against the target's exact law. Audits transformers' "
                    "_speculative_sampling without and with assistant_ensemble_weight, and "
                    "spectheory's decoder with --rule. Prints one verdict (PASS / FAIL / "
                    "INCONCLUSIVE) per decoder with the exact and measured total variation.",
    )
    a.add_argument("--rule", default="sd",
                   help="spectheory rule decoded by spectheory.blocks.decode (sd; lossy rules "
                        "such as ensemble or typical fail)")
    a.add_argument("--ensemble-weight", type=float, default=0.5,
                   help="transformers' assistant_ensemble_weight of the failing run (0.5)")
    a.add_argument("--gamma", type=int, default=2, help="draft chain length (2)")
    a.add_argument("--tokens", type=int, default=2, help="audited prefix length L (2)")
    a.add_argument("--tv", type=float, default=0.05,
                   help="total variation the audit must detect; sets the sample size (0.05)")
    a.add_argument("--level", type=float, default=0.01, help="significance level (0.01)")
    a.add_argument("--power", type=float, default=0.99, help="power against --tv (0.99)")
    a.add_argument("--samples", type=int, default=None,
                   help="decodes per audit (default: the power analysis' sample size)")
    a.add_argument("--sequential", action="store_true",
                   help="stop as soon as a mixture SPRT rejects (error control at any stop)")
    a.add_argument("--no-transformers", action="store_true",
                   help="skip the transformers audits")
    a.add_argument("--seed", type=int, default=0, help="random seed (0)")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.set_defaults(func=cmd_audit)
    return a


def cmd_audit(args: argparse.Namespace) -> int:
    from ..blocks import Chain
    from ..verifiers.lossy import Ensemble
    from . import audit_decoder, decoder_law, law_tv, sequence_law
    from . import subjects as S

    target, draft = S.builtin_models()
    chain = Chain(args.gamma)
    want = sequence_law(target, args.tokens)
    runs: list[tuple[str, Any, Any]] = []
    if not args.no_transformers:
        try:
            version = S.transformers_version()
        except ImportError as exc:
            raise ImportError(
                f"{exc}; install the models extra or pass --no-transformers"
            ) from None
        runs.append((f"transformers {version} _speculative_sampling",
                     S.transformers_decoder(args.gamma), "sd"))
        w = args.ensemble_weight
        runs.append((f"transformers {version}, assistant_ensemble_weight={w:g}",
                     S.transformers_decoder(args.gamma, w), Ensemble(w)))
    runs.append((f"spectheory decode, rule {args.rule}",
                 S.spectheory_decoder(chain, args.rule), args.rule))
    out = []
    for i, (label, dec, rule) in enumerate(runs):
        exact = float(law_tv(decoder_law(target, draft, chain, rule, args.tokens), want))
        r = audit_decoder(dec, target, draft, num_tokens=args.tokens, samples=args.samples,
                          level=args.level, power=args.power, tv=args.tv,
                          seed=args.seed + i, sequential=args.sequential)
        out.append({"decoder": label, "status": r.status.name, "exact_tv": exact, "tv": r.tv,
                    "tv_interval": list(r.tv_interval), "pvalue": r.pvalue,
                    "samples": r.samples, "planned_samples": r.planned_samples,
                    "test": r.test})
    if args.json:
        print(json.dumps({"models": "built-in Markov pair, V = 3", "gamma": args.gamma,
                          "tokens": args.tokens, "audits": out}, indent=1))
        return 0
    print(f"Block-level audits: built-in Markov pair (V = 3), chain of {args.gamma} drafts, "
          f"law of the first {args.tokens} tokens; detect TV {args.tv:g} at level "
          f"{args.level:g} with power {args.power:g}")
    for o in out:
        lo, hi = o["tv_interval"]
        print(f"  {o['status']:<12} {o['decoder']}: exact TV {o['exact_tv']:.4f}, measured "
              f"{o['tv']:.4f} [{lo:.4f}, {hi:.4f}], p-value {o['pvalue']:.3g}, "
              f"{o['samples']} samples")
    return 0
