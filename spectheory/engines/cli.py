r"""The ``spectheory engine`` and ``spectheory tree`` commands (registered by
:mod:`spectheory.cli`).

``spectheory engine LOGFILE [--engine vllm|sglang|llamacpp] [--p P --q Q]``
    Convert the engine's numbers (mean accepted length with and without the bonus token,
    unconditional and conditional per-position rates), fit a conditional profile, predict tokens
    per call for other draft lengths and the best one under a cost model; with dumps of the
    workload's target/draft distributions, put alpha* and the best tree beside the engine.
``spectheory tree --budget N (--p P --q Q | --target ... --draft ...)``
    Sequoia's best tree for the measured acceptance vector of a token-level verifier and for the
    alpha*-implied vector, the engine configuration, and optionally a Monte Carlo decode check.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_engine_parser", "add_tree_parser", "cmd_engine", "cmd_tree"]


def _cli() -> Any:
    from .. import cli

    return cli


def _load_pair(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    cli = _cli()
    out = []
    for spec, role, flag in ((args.p, "target", "--p"), (args.q, "draft", "--q")):
        try:
            arr = cli.load_array(spec, role)
        except cli.CLIError as exc:
            raise cli.CLIError(str(exc).replace(f"--{role}", flag)) from None
        out.append(np.atleast_2d(np.asarray(arr, dtype=np.float64)))
    if out[0].shape != out[1].shape:
        raise cli.CLIError(f"--p and --q: shapes {out[0].shape} and {out[1].shape} differ")
    return out[0], out[1]


def _cost(args: argparse.Namespace) -> Any:
    from ..trees import CostModel

    cli = _cli()
    if args.draft_cost < 0:
        raise cli.CLIError(f"--draft-cost: must be >= 0, got {args.draft_cost}")
    try:
        return CostModel.parse(args.target_cost, args.draft_cost)
    except ValueError as exc:
        raise cli.CLIError(f"--target-cost: {exc}") from None


def _add_cost_args(a: argparse.ArgumentParser) -> None:
    a.add_argument("--draft-cost", type=float, default=0.05,
                   help="cost of one draft forward (one draft position or tree level) relative to "
                        "one target call (0.05)")
    a.add_argument("--target-cost", default=None, metavar="TABLE",
                   help="target-call cost by verified tokens, size:cost pairs like "
                        "1:1,16:1.05,64:1.4 (default: 1 for every size)")


def _write_json(out: Path, name: str, data: dict[str, Any]) -> Path:
    from .. import __version__

    out.mkdir(parents=True, exist_ok=True)
    data = {"spectheory_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data}
    path = out / name
    path.write_text(json.dumps(data, indent=2, default=_json_default))
    return path


def _json_default(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x).__name__)


# ----------------------------------------------------------------------------- engine
def add_engine_parser(sub: Any) -> None:
    e = sub.add_parser(
        "engine", help="convert an engine's speculative-decoding log and compare it with bounds",
        description="Read vLLM 'SpecDecoding metrics' lines or Prometheus counters, SGLang "
                    "meta_info / 'accept len' lines, or llama.cpp draft statistics; print the "
                    "conversion, the fitted per-position profile, tokens per call for other "
                    "draft lengths and the best one under a cost model. With --p/--q (dumped "
                    "target/draft distributions of the same workload): alpha* and the best tree.",
    )
    e.add_argument("logfile", help="log file, Prometheus scrape or SGLang JSON responses")
    e.add_argument("--engine", choices=("vllm", "sglang", "llamacpp"), default=None,
                   help="parser (default: detected)")
    e.add_argument("--k", type=int, default=None,
                   help="the engine's number of speculative tokens, when the log does not say")
    e.add_argument("--max-k", type=int, default=12, help="largest draft length predicted (12)")
    e.add_argument("--p", help="target distributions (T, V) of the workload (.npy/.npz/.safetensors)")
    e.add_argument("--q", help="draft distributions matching --p")
    e.add_argument("--samples", type=int, default=128,
                   help="Monte Carlo paths per position for rrs_wor beyond two drafts (128)")
    _add_cost_args(e)
    e.add_argument("--out", default="spectheory-engine", help="output directory (spectheory-engine/)")
    e.add_argument("--no-plots", action="store_true", help="skip the PNG plot")
    e.set_defaults(func=cmd_engine)


def cmd_engine(args: argparse.Namespace) -> int:
    from .stats import fit_chain, parse

    cli = _cli()
    if args.max_k < 1:
        raise cli.CLIError(f"--max-k: must be >= 1, got {args.max_k}")
    if args.k is not None and args.k < 1:
        raise cli.CLIError(f"--k: must be >= 1, got {args.k}")
    if (args.p is None) != (args.q is None):
        raise cli.CLIError("--p and --q go together (dumps of target and draft distributions)")
    path = Path(args.logfile)
    if not path.is_file():
        raise cli.CLIError(f"LOGFILE: file {args.logfile!r} not found")
    cost = _cost(args)
    pair = _load_pair(args) if args.p is not None else None
    stats = parse(path.read_text(encoding="utf-8", errors="replace"), args.engine)
    fit = fit_chain(stats, max(args.max_k, stats.num_speculative_tokens or 1), args.k)
    best_k, rate = fit.best_k(cost)
    con = cli._console()
    p = lambda s: cli._print(con, s)  # noqa: E731
    fmt = cli._fmt
    p(f"engine: {stats.engine} ({stats.source}, {stats.records} record(s))")
    if stats.mean_acceptance_length is not None:
        p(f"mean acceptance length (engine's definition): {fmt(stats.mean_acceptance_length)}")
    if stats.mean_accepted is not None:
        p(f"accepted draft tokens per target call (no bonus): {fmt(stats.mean_accepted)};  "
          f"tokens per call (bonus included): {fmt(1 + stats.mean_accepted)}")
    for label, v in (("drafts (target calls)", stats.num_drafts),
                     ("drafted tokens", stats.drafted_tokens),
                     ("accepted tokens", stats.accepted_tokens)):
        p(f"{label}: {'n/a' if v is None else v}")
    if stats.acceptance_rate is not None:
        p(f"accepted / drafted tokens: {fmt(stats.acceptance_rate)}")
    if stats.position_rates is not None:
        p("position  unconditional r_i  conditional c_i")
        for i, (r, c) in enumerate(zip(stats.position_rates, stats.conditional_rates,
                                       strict=True), 1):
            p(f"{i:>8}  {fmt(r):>17}  {fmt(float(c)):>15}")
    for n in stats.notes:
        p(f"note: {n}")
    for w in fit.warnings:
        p(f"warning: {w}")
    p(f"fitted profile ({fit.method}): c = {', '.join(fmt(x, 3) for x in fit.conditional)}")
    p("k   tokens/call   tokens per unit time")
    for k in range(1, len(fit.conditional) + 1):
        mark = "  <- best" if k == best_k else ""
        p(f"{k:<3} {fit.tokens_per_call(k):>11.4f}   {rate[k]:>20.4f}{mark}")
    p(f"recommended k = {best_k} under the cost model (draft cost {args.draft_cost} per position"
      f"{', target costs ' + args.target_cost if args.target_cost else ''})")
    result: dict[str, Any] = {"stats": stats.to_dict(), "fit": fit.to_dict(),
                              "best_k": best_k, "tokens_per_time": rate.tolist(),
                              "cost": {"draft_per_depth": args.draft_cost,
                                       "target_costs": args.target_cost}}
    if pair is not None:
        result["bounds"] = _engine_bounds(stats, fit, pair, args, p)
    out = Path(args.out)
    paths = {"json": _write_json(out, "engine.json", result)}
    if not args.no_plots:
        paths["plot"] = _plot_engine(out, stats, fit, result.get("bounds"))
    for kind, pth in paths.items():
        p(f"  {kind:<6} {pth}")
    return 0


def _engine_bounds(stats: Any, fit: Any, pair: tuple[np.ndarray, np.ndarray],
                   args: argparse.Namespace, p: Any) -> dict[str, Any]:
    from ..trees import alpha_star_vector, positional_acceptance, sequoia_tree

    P, Q = pair
    k = stats.num_speculative_tokens or args.k or 4
    kk = max(k, 2)
    star = alpha_star_vector(P, Q, kk, scheme="wor")
    wor = positional_acceptance(P, Q, kk, verifier="rrs_wor", samples=args.samples)
    beta = float(np.minimum(P, Q).sum(axis=1).mean())
    chain_sd = float(sum(beta**i for i in range(1, k + 1)))
    measured = fit.tokens_per_call(k)
    t_wor = sequoia_tree(wor.conditional, k)
    t_star = sequoia_tree(star.conditional, k)
    out = {
        "k": k, "positions": int(P.shape[0]), "V": int(P.shape[1]),
        "alpha_star_wor": star.cumulative.tolist(), "rrs_wor": wor.cumulative.tolist(),
        "single_draft_acceptance": beta,
        "engine_tokens_per_call": measured,
        "chain_sd_tokens_per_call": 1 + chain_sd,
        "best_tree_rrs_wor": {"tokens_per_call": t_wor.tokens_per_call,
                              "parents": list(t_wor.tree.parents)},
        "best_tree_alpha_star": {"tokens_per_call": t_star.tokens_per_call,
                                 "parents": list(t_star.tree.parents)},
    }
    p(f"dumps: {P.shape[0]} positions, V = {P.shape[1]} (stationary per-position model)")
    p(f"  position-1 acceptance: engine r_1 = "
      f"{'n/a' if stats.position_rates is None else f'{stats.position_rates[0]:.4f}'}, "
      f"single-draft SD on the dumps {beta:.4f}")
    p(f"  alpha*_wor(n), n = 1..{kk}: {', '.join(f'{x:.4f}' for x in star.cumulative)}")
    p(f"  tokens per call with {k} draft tokens: engine {measured:.4f} | chain with token-level SD "
      f"{1 + chain_sd:.4f} | best tree, rrs_wor {t_wor.tokens_per_call:.4f} | best tree under "
      f"alpha* {t_star.tokens_per_call:.4f}")
    p(f"  headline: the engine reaches {measured / t_star.tokens_per_call:.1%} of the alpha*-tree "
      f"value at the same budget (gap {t_star.tokens_per_call - measured:.4f} tokens per call)")
    out["chain_block"] = _chain_block(P, Q, k, args, p)
    return out


def _chain_block(P: np.ndarray, Q: np.ndarray, k: int, args: argparse.Namespace, p: Any
                 ) -> dict[str, Any]:
    r"""Block verification on a chain of ``k`` drafts under the same stationary per-position
    model: each dumped position :math:`t` is a context-free pair :math:`(p_t, q_t)` at every
    depth. For one chain, block verification (Sun et al., ICLR 2025) *is* the best lossless
    one-call verifier (checked against the LP of ``spectheory.blocks.block_bound`` in the tests),
    so its value is the lossless block bound of that chain. Monte Carlo over positions with the
    rules' samplers (``--samples`` blocks spread over at most 32 positions)."""
    from ..blocks import Chain, block_acceptance

    idx = np.unique(np.linspace(0, P.shape[0] - 1, min(32, P.shape[0])).astype(int))
    per = max(2, args.samples // len(idx))
    res: dict[str, Any] = {"positions": len(idx), "samples_per_position": per, "k": k}
    for rule in ("sd", "block"):
        means, var = [], []
        for j, t in enumerate(idx):
            pt, qt = P[t], Q[t]
            r = block_acceptance(lambda h, pt=pt: pt, lambda h, qt=qt: qt, Chain(k), rule,
                                 method="mc", samples=per, seed=1000 * j + 7)
            means.append(r.mean)
            var.append(r.stderr**2)
        m = float(np.mean(means))
        se = float(np.sqrt(np.sum(var)) / len(idx))
        res[rule] = {"tokens_per_call": 1 + m, "stderr": se}
    p(f"  chain of {k} drafts, same stationary model (Monte Carlo, {len(idx)} positions x {per}): "
      f"token-level SD {res['sd']['tokens_per_call']:.3f} +- {res['sd']['stderr']:.3f} | block "
      f"verification = lossless block bound of the chain {res['block']['tokens_per_call']:.3f} "
      f"+- {res['block']['stderr']:.3f} tokens per call")
    return res


def _plot_engine(out: Path, stats: Any, fit: Any, bounds: dict[str, Any] | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ks = np.arange(1, len(fit.conditional) + 1)
    ax.plot(ks, 1 + fit.expected, "o-", color="C0", label="chain, fitted profile")
    if stats.position_rates is not None:
        m = len(stats.position_rates)
        ax.plot(np.arange(1, m + 1), 1 + np.cumsum(np.minimum.accumulate(stats.position_rates)),
                "s", color="C3", label="engine, measured")
    if bounds is not None:
        ax.plot([bounds["k"]], [bounds["best_tree_alpha_star"]["tokens_per_call"]], "^",
                color="C2", label="best tree under alpha*")
    ax.set_xlabel("draft tokens per call (k)")
    ax.set_ylabel("tokens per target call")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "engine.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- tree
def add_tree_parser(sub: Any) -> None:
    t = sub.add_parser(
        "tree", help="the best draft tree for a model pair (Sequoia DP) and its engine config",
        description="Measure the positional acceptance vector of a token-level verifier on dumped "
                    "distributions (--p/--q) or on a model pair (default: the embedded SmolLM2-135M "
                    "and its layer-skipped draft, on a continuation sampled from the target), "
                    "build Sequoia's optimal tree of --budget draft tokens for it and for the "
                    "alpha*-implied vector, and print the engine configuration.",
    )
    t.add_argument("--budget", type=int, required=True, help="draft tokens per target call")
    t.add_argument("--max-depth", type=int, default=None, help="limit the tree depth")
    t.add_argument("--p", help="target distributions (T, V) (.npy/.npz/.safetensors)")
    t.add_argument("--q", help="draft distributions matching --p")
    t.add_argument("--target", default="smollm2", help="target model ('smollm2' or a local path)")
    t.add_argument("--draft", default="skip", help="'skip' (layer-skipped target), 'quant', or a path")
    t.add_argument("--skip", type=int, default=4, help="layers skipped by --draft skip (4)")
    t.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (1)")
    t.add_argument("--max-tokens", type=int, default=48,
                   help="positions measured on the model pair (48)")
    t.add_argument("--k", type=int, default=8, help="children positions measured (8)")
    t.add_argument("--verifier", choices=("rrs_wor", "rrs", "greedy"), default="rrs_wor",
                   help="token-level rule and its tree scheme: rrs_wor (without replacement, "
                        "default), rrs (i.i.d.), greedy (top-k children)")
    t.add_argument("--samples", type=int, default=128,
                   help="Monte Carlo paths per position for rrs_wor beyond two drafts (128)")
    t.add_argument("--check", type=int, default=0, metavar="TOKENS",
                   help="also decode TOKENS tokens with the tree on the model pair (Monte Carlo) "
                        "and compare tokens per call with the prediction")
    t.add_argument("--seed", type=int, default=0, help="random seed (0)")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    t.add_argument("--format", choices=("vllm", "sglang", "json"), default="vllm",
                   help="engine configuration printed (vllm)")
    _add_cost_args(t)
    t.add_argument("--out", default="spectheory-tree", help="output directory (spectheory-tree/)")
    t.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    t.set_defaults(func=cmd_tree)


def _check_tree_args(args: argparse.Namespace) -> None:
    from ..trees import MAX_BUDGET

    cli = _cli()
    if not 1 <= args.budget <= MAX_BUDGET:
        raise cli.CLIError(f"--budget: must be in 1..{MAX_BUDGET}, got {args.budget}")
    if args.max_depth is not None and args.max_depth < 1:
        raise cli.CLIError(f"--max-depth: must be >= 1, got {args.max_depth}")
    for flag, v in (("--k", args.k), ("--max-tokens", args.max_tokens), ("--samples", args.samples),
                    ("--threads", args.threads), ("--skip", args.skip)):
        if v < 1:
            raise cli.CLIError(f"{flag}: must be >= 1, got {v}")
    if args.temperature <= 0:
        raise cli.CLIError(f"--temperature: must be > 0 for sampled drafts, got {args.temperature}")
    if args.check < 0:
        raise cli.CLIError(f"--check: must be >= 0, got {args.check}")
    if (args.p is None) != (args.q is None):
        raise cli.CLIError("--p and --q go together (dumps of target and draft distributions)")
    if args.check and args.p is not None:
        raise cli.CLIError("--check decodes with a model pair; it cannot be used with --p/--q")


class _Conditional:
    """A causal LM as a conditional model ``context -> probs`` (last position only), cached."""

    def __init__(self, model: Any, sampling: Any) -> None:
        self.model, self.sampling = model, sampling
        self.cache: dict[tuple[int, ...], np.ndarray] = {}

    def __call__(self, ctx: tuple[int, ...]) -> np.ndarray:
        out = self.cache.get(ctx)
        if out is None:
            import torch

            x = torch.as_tensor(np.asarray(ctx, dtype=np.int64))[None, :]
            with torch.no_grad():
                logits = self.model(input_ids=x, use_cache=False).logits[0, -1]
            out = self.sampling(logits.to(torch.float64).numpy(), name="logits")
            if len(self.cache) > 20000:
                self.cache.clear()
            self.cache[ctx] = out
        return out


def _model_pair(args: argparse.Namespace, con: Any) -> tuple[np.ndarray, np.ndarray, dict, Any]:
    import torch

    from .. import models
    from ..logits import Sampling

    cli = _cli()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with cli._status(con, "loading the target model"):
        target, tok = models.load_model(args.target)
    if args.draft == "skip":
        draft, desc = models.layer_skip(target, args.skip), f"target, {args.skip} layers skipped"
    elif args.draft == "quant":
        draft, desc = models.requantize(target, 4), "target re-quantised to 4 bits"
    else:
        draft, _ = models.load_model(args.draft)
        desc = str(args.draft)
    sampling = Sampling(args.temperature)
    prompt = tok.encode(models.builtin_text())[:32]
    import warnings

    warnings.filterwarnings("ignore", message=".*past_key_values.*", category=FutureWarning)
    with cli._status(con, f"sampling a {args.max_tokens}-token continuation from the target"):
        g = torch.Generator().manual_seed(args.seed)
        ids = list(prompt)
        with torch.no_grad():
            out = target(input_ids=torch.as_tensor([ids]), use_cache=True)
            past = out.past_key_values
            for _ in range(args.max_tokens):
                pr = torch.as_tensor(sampling(out.logits[0, -1].to(torch.float64).numpy()))
                y = int(torch.multinomial(pr, 1, generator=g))
                ids.append(y)
                out = target(input_ids=torch.as_tensor([[y]]), past_key_values=past, use_cache=True)
                past = out.past_key_values
    pairs = models.collect(target, draft, ids=ids, sampling=sampling, max_tokens=None)
    P, Q = pairs.p[len(prompt) - 1: -1], pairs.q[len(prompt) - 1: -1]
    meta = {"target": args.target, "draft": desc, "positions": int(P.shape[0]),
            "sampling": sampling.describe(),
            "text": "continuation sampled from the target after 32 tokens of "
                    "pydoc_data.topics['for']"}
    ctx = {"target": _Conditional(target, sampling), "draft": _Conditional(draft, sampling),
           "prompt": tuple(int(t) for t in prompt)}
    return P, Q, meta, ctx


def cmd_tree(args: argparse.Namespace) -> int:
    from ..trees import alpha_star_vector, positional_acceptance, sequoia_tree

    cli = _cli()
    _check_tree_args(args)
    cost = _cost(args)
    con = cli._console()
    p = lambda s: cli._print(con, s)  # noqa: E731
    models_ctx = None
    if args.p is not None:
        P, Q = _load_pair(args)
        meta: dict[str, Any] = {"target": args.p, "draft": args.q, "positions": int(P.shape[0])}
    else:
        P, Q, meta, models_ctx = _model_pair(args, con)
    K = min(args.k, args.budget)
    vec = positional_acceptance(P, Q, K, verifier=args.verifier, samples=args.samples,
                                seed=args.seed)
    scheme = vec.scheme
    res = sequoia_tree(vec.conditional, args.budget, max_depth=args.max_depth, scheme=scheme)
    star = None
    if args.verifier in ("rrs_wor", "rrs"):
        star = alpha_star_vector(P, Q, K, scheme="wor" if args.verifier == "rrs_wor" else "iid")
        res_star = sequoia_tree(star.conditional, args.budget, max_depth=args.max_depth,
                                scheme=scheme)
    t = res.tree
    widths = np.bincount(np.asarray(t.depth[1:]), minlength=t.max_depth + 1)[1:]
    p(f"pair: {meta['target']} vs {meta['draft']}, {meta['positions']} positions")
    p(f"acceptance vector of {args.verifier} (scheme {scheme}, {vec.method}): "
      f"a = {', '.join(f'{x:.3f}' for x in vec.conditional)}")
    p(f"best tree for budget {args.budget}: {t.num_nodes} nodes, depth {t.max_depth}, nodes per "
      f"depth {widths.tolist()}, root children {len(t.children[0])}")
    p(f"predicted tokens per call ({args.verifier}): {res.tokens_per_call:.4f}")
    from ..trees import greedy_tree

    greedy = greedy_tree(vec.conditional, args.budget, scheme=scheme)
    p(f"greedy baseline (OPT-Tree / EAGLE-2 expansion by path probability, same budget): "
      f"{greedy.tokens_per_call:.4f} tokens per call, depth {greedy.tree.max_depth}")
    out: dict[str, Any] = {"meta": meta, "budget": args.budget, "verifier": args.verifier,
                           "acceptance": vec.to_dict(), "tree": res.to_dict(),
                           "greedy_baseline": greedy.to_dict()}
    if star is not None:
        p(f"alpha*-implied vector ({star.scheme}): a* = "
          f"{', '.join(f'{x:.3f}' for x in star.conditional)}")
        p(f"best tree under alpha*: {res_star.tokens_per_call:.4f} tokens per call (bound for "
          f"token-level verifiers on sorted trees, stationary model); the {args.verifier} tree "
          f"evaluated under alpha*: {1 + _value(res.tree, star.conditional):.4f}")
        out["alpha_star"] = {"acceptance": star.to_dict(), "tree": res_star.to_dict()}
    from ..trees import best_design

    design = best_design(vec.conditional, cost, max_budget=min(args.budget, 256),
                         max_depth=min(args.max_depth or 12, 12))
    p(f"cost model (draft {args.draft_cost}/level"
      f"{', target ' + args.target_cost if args.target_cost else ''}): best budget "
      f"{design.budget}, depth {design.depth}: {design.tokens_per_call:.4f} tokens per call, "
      f"{design.tokens_per_time:.4f} tokens per unit time")
    out["design"] = design.to_dict()
    from .configs import sglang_flags, vllm_speculative_config

    cfg = {"vllm": vllm_speculative_config(t), "sglang": sglang_flags(t)}
    out["engine_config"] = cfg
    if args.format == "vllm":
        p("vLLM --speculative-config '" + json.dumps(cfg["vllm"]) + "'")
        if scheme != "greedy":
            p("note: vLLM drafts tree children as the top-k draft tokens (scheme 'greedy'); rerun "
              "with --verifier greedy for a tree built for that drafting")
    elif args.format == "sglang":
        p("SGLang " + " ".join(cfg["sglang"]))
    else:
        p(json.dumps(cfg))
    if args.check:
        out["check"] = _check(args, res, models_ctx, p)
    path = Path(args.out)
    paths = {"json": _write_json(path, "tree.json", out)}
    if not args.no_plots:
        paths.update(_plot_tree(path, res, res_star if star is not None else None))
    for kind, pth in paths.items():
        p(f"  {kind:<6} {pth}")
    return 0


def _value(tree: Any, a: Any) -> float:
    from ..trees import tree_value

    return tree_value(tree, a)


def _check(args: argparse.Namespace, res: Any, ctx: dict[str, Any], p: Any) -> dict[str, Any]:
    from ..blocks.decode import decode
    from ..blocks.verify import TokenLevel

    cli = _cli()
    verifier = {"rrs_wor": "rrs_wor", "rrs": "rrs", "greedy": "greedy"}[args.verifier]
    rule = TokenLevel(verifier, res.tree.scheme, merge=False)
    t0 = time.perf_counter()
    with cli._status(cli._console(), f"Monte Carlo decode of {args.check} tokens with the tree"):
        d = decode(ctx["target"], ctx["draft"], res.tree, rule, args.check,
                   np.random.default_rng(args.seed), context=ctx["prompt"])
    inside = bool(d.low <= res.tokens_per_call <= d.high)
    p(f"Monte Carlo decode: {d.calls} target calls, {d.tokens_per_call:.4f} tokens per call, "
      f"{d.level:.0%} interval [{d.low:.4f}, {d.high:.4f}]; prediction {res.tokens_per_call:.4f} "
      f"{'inside' if inside else 'OUTSIDE'} ({time.perf_counter() - t0:.0f} s)")
    return {"calls": d.calls, "tokens_per_call": d.tokens_per_call, "low": d.low, "high": d.high,
            "level": d.level, "prediction": res.tokens_per_call, "inside": inside}


def _plot_tree(out: Path, res: Any, star: Any) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    n = np.arange(len(res.curve))
    ax.plot(n, 1 + res.curve, color="C0", label="best tree, measured vector")
    if star is not None:
        ax.plot(n, 1 + star.curve, color="C2", linestyle="--", label="best tree, alpha* vector")
    ax.set_xlabel("budget (draft tokens per call)")
    ax.set_ylabel("expected tokens per target call")
    ax.set_xscale("symlog", linthresh=8)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    p1 = out / "tree_budget.png"
    fig.savefig(p1, dpi=120)
    plt.close(fig)
    # the tree: x by DFS leaf order, y by depth
    t = res.tree
    x = np.zeros(t.num_nodes + 1)
    nxt = [0.0]

    def place(u: int) -> None:
        ch = t.children[u]
        if not ch:
            x[u] = nxt[0]
            nxt[0] += 1
            return
        for c in ch:
            place(c)
        x[u] = float(np.mean([x[c] for c in ch]))

    import sys

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    place(0)
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.15 * nxt[0]), 1.5 + 0.6 * t.max_depth))
    for u in range(1, t.num_nodes + 1):
        par = t.parents[u]
        ax.plot([x[par], x[u]], [-t.depth[par], -t.depth[u]], color="0.6", lw=0.8, zorder=1)
    ax.scatter(x, -np.asarray(t.depth), s=12, color="C0", zorder=2)
    ax.set_yticks(-np.arange(t.max_depth + 1), [str(d) for d in range(t.max_depth + 1)])
    ax.set_ylabel("depth")
    ax.set_xticks([])
    ax.set_title(f"{t.num_nodes} draft tokens, {res.tokens_per_call:.3f} tokens per call")
    fig.tight_layout()
    p2 = out / "tree.png"
    fig.savefig(p2, dpi=120)
    plt.close(fig)
    return {"plot": p1, "tree": p2}
