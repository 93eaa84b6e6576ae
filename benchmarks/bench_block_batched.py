"""Block level over many contexts: block_acceptance_batched with the numpy and the JAX backend,
and a loop of block_acceptance(method="mc") per context (issue 16, "Block level").

Markov rows. A random order-1 Markov pair (:class:`spectheory.blocks.Markov`) with V = 1000 and
Dirichlet(1) rows; B random contexts of 8 tokens; Chain(gamma = 4); verifiers "sd" and "block".
The batched models index the transition table for all rows at once (what one batched forward of
a real model does); the loop calls the per-context models through :func:`block_acceptance`. All
draw ``samples = 2`` blocks per context (the scalar function needs at least 2). The two backends
are timed round-robin (``bench_core.interleaved``, best of ``reps``) so they share the machine's
load; the JAX backend's first call (jit compilation) is reported apart.

Real pair (``--real``). SmolLM2-135M (the embedded model of :func:`spectheory.models.load_model`)
as the target and the same model with 4 of its 30 layers skipped
(:func:`spectheory.models.layer_skip`) as the draft, temperature 1, on ``--real-contexts``
windows of 8 tokens of CPython's pydoc topics; Chain(3), one block per context. The batched
models here run one ``transformers`` forward over many prefixes at once (:class:`TargetBatch`,
:class:`DraftBatch`); the time spent inside them (and in a memo of their rows) is recorded, so
the rest (validation, draws, verification, prefix bookkeeping) is the backend's own cost. For
one seed and backend the drafted tokens do not depend on the verifier, so the "block" run reuses
the rows of the "sd" run.

Usage::

    python benchmarks/bench_block_batched.py            # Markov rows, B = 1000 and 4000
    python benchmarks/bench_block_batched.py --real     # + the SmolLM2 rows (minutes on a CPU)
    python benchmarks/bench_block_batched.py --quick    # B = 200 and 400, nothing written

Prints a table and writes ``benchmarks/results/bench_block_batched.json``. Timings are wall-clock
on the machine it runs on (stated in the JSON with the load average before and after).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bench_core import interleaved  # same directory (the script's own folder is on sys.path)

from spectheory.blocks import Chain, Markov, block_acceptance, block_acceptance_batched

OUT = Path(__file__).parent / "results" / "bench_block_batched.json"
V, GAMMA, CTX_LEN, SAMPLES = 1000, 4, 8, 2
REAL_GAMMA, REAL_CTX_LEN, REAL_SKIP, REAL_CHUNK = 3, 8, 4, 250


def markov(rng: np.random.Generator) -> tuple[Markov, np.ndarray, np.ndarray]:
    init = rng.dirichlet(np.ones(V))
    T = rng.dirichlet(np.ones(V), size=V)
    return Markov(init, T), init, T


def batched(init: np.ndarray, T: np.ndarray):
    def f(contexts: list[tuple[int, ...]]) -> np.ndarray:
        last = np.fromiter((c[-1] if c else -1 for c in contexts), dtype=np.int64, count=len(contexts))
        out = T[np.maximum(last, 0)]
        out[last < 0] = init
        return out

    return f


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# ---------------------------------------------------------------------- real pair
def _softmax64(logits: Any) -> np.ndarray:
    """Temperature-1 next-token law in float64 (what :class:`spectheory.logits.Sampling` gives
    without truncation), for many rows at once."""
    import torch

    return torch.softmax(logits.to(torch.float64), dim=-1).numpy()


class _Timed:
    """Accumulates the wall time spent in the model (forwards and the softmax)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.forwards = 0
        self.tokens = 0


class TargetBatch(_Timed):
    """A batched target model from a ``transformers`` causal LM.

    The prefixes of one verification call are prefixes of a few longest ones (context + the
    whole drafted chain), so only those are run: one forward per chunk of ``chunk`` sequences,
    right-padded to the longest (causal attention: a position never sees the padding after it),
    and the law after each requested prefix is read at its last position.
    """

    def __init__(self, model: Any, chunk: int = REAL_CHUNK) -> None:
        super().__init__()
        self.model, self.chunk = model, chunk

    def __call__(self, prefixes: list[tuple[int, ...]]) -> np.ndarray:
        import torch

        t0 = time.perf_counter()
        where: dict[tuple[int, ...], tuple[int, int]] = {}
        seqs: list[tuple[int, ...]] = []
        for h in sorted(set(prefixes), key=len, reverse=True):
            if h not in where:  # not a prefix of a longer one already listed
                j = len(seqs)
                seqs.append(h)
                for k in range(1, len(h) + 1):
                    where.setdefault(h[:k], (j, k - 1))
        need = [where[h] for h in prefixes]
        rows: dict[tuple[int, int], int] = {jk: i for i, jk in enumerate(dict.fromkeys(need))}
        out = np.empty((len(rows), self.model.config.vocab_size))
        by_seq: dict[int, list[tuple[int, int]]] = {}
        for j, k in rows:
            by_seq.setdefault(j, []).append((j, k))
        for a in range(0, len(seqs), self.chunk):
            block = seqs[a : a + self.chunk]
            T = max(map(len, block))
            ids = torch.zeros((len(block), T), dtype=torch.long)
            for r, s in enumerate(block):
                ids[r, : len(s)] = torch.as_tensor(s)
            with torch.no_grad():
                hidden = self.model.model(input_ids=ids, use_cache=False).last_hidden_state
                pick = [(j, k) for j in range(a, a + len(block)) for (_, k) in by_seq.get(j, [])]
                rr = torch.as_tensor([j - a for j, _ in pick])
                kk = torch.as_tensor([k for _, k in pick])
                logits = self.model.lm_head(hidden[rr, kk])
            out[[rows[jk] for jk in pick]] = _softmax64(logits)
            self.forwards += 1
            self.tokens += len(block) * T
        self.seconds += time.perf_counter() - t0
        return out[[rows[jk] for jk in need]]


class DraftBatch(_Timed):
    """A batched draft model for lockstep drafting: when every prefix extends the previous call's
    prefix of the same row by one token, only that token is fed (a KV cache per chunk of rows);
    otherwise one forward over the (equal-length) prefixes starts new caches."""

    def __init__(self, model: Any, chunk: int = REAL_CHUNK) -> None:
        super().__init__()
        self.model, self.chunk = model, chunk
        self.prev: list[tuple[int, ...]] | None = None
        self.caches: list[Any] = []
        params = inspect.signature(model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"  # transformers >= 5.x

    def __call__(self, prefixes: list[tuple[int, ...]]) -> np.ndarray:
        import torch
        from transformers import DynamicCache

        t0 = time.perf_counter()
        step = (
            self.prev is not None
            and len(self.prev) == len(prefixes)
            and all(len(h) == len(p) + 1 and h[:-1] == p for h, p in zip(prefixes, self.prev, strict=True))
        )
        if not step and len({len(h) for h in prefixes}) != 1:
            raise ValueError("DraftBatch: prefixes of one call must have equal lengths")
        out = np.empty((len(prefixes), self.model.config.vocab_size))
        n = len(prefixes[0])
        for c, a in enumerate(range(0, len(prefixes), self.chunk)):
            block = prefixes[a : a + self.chunk]
            if step:
                ids = torch.as_tensor([[h[-1]] for h in block])
                pos = torch.full((len(block), 1), n - 1, dtype=torch.long)
                cache = self.caches[c]
            else:
                ids = torch.as_tensor(block)
                pos = torch.arange(n, dtype=torch.long)[None, :].expand(len(block), n)
                cache = DynamicCache()
                if c == 0:
                    self.caches = []
                self.caches.append(cache)
            with torch.no_grad():
                kw = {self.cache_kw: cache}
                res = self.model(input_ids=ids, position_ids=pos, use_cache=True, logits_to_keep=1, **kw)
            out[a : a + len(block)] = _softmax64(res.logits[:, -1])
            self.forwards += 1
            self.tokens += ids.numel()
        self.prev = list(prefixes)
        self.seconds += time.perf_counter() - t0
        return out


class _Memo:
    """Rows already computed (the "block" run after the "sd" run of the same seed and backend);
    ``seconds``: all the time spent here (the forwards and the memo's own copies), the model's
    share of a run."""

    def __init__(self, f: Callable[[list[tuple[int, ...]]], np.ndarray]) -> None:
        self.f, self.rows, self.seconds = f, {}, 0.0

    def __call__(self, prefixes: list[tuple[int, ...]]) -> np.ndarray:
        t0 = time.perf_counter()
        if any(h not in self.rows for h in prefixes):  # the whole list, in order (DraftBatch steps)
            for h, r in zip(prefixes, self.f(prefixes), strict=True):
                self.rows[h] = r
        out = np.stack([self.rows[h] for h in prefixes])
        self.seconds += time.perf_counter() - t0
        return out


def real_contexts(tok: Any, B: int) -> list[tuple[int, ...]]:
    """``B`` windows of 8 tokens (stride 4) of CPython's pydoc topics, in sorted topic order."""
    from pydoc_data.topics import topics

    ids: list[int] = []
    for name in sorted(topics):
        ids += tok.encode(topics[name])
        if len(ids) >= 4 * B + REAL_CTX_LEN:
            break
    return [tuple(ids[4 * b : 4 * b + REAL_CTX_LEN]) for b in range(B)]


def self_check(target: Any, draft: Any, contexts: list[tuple[int, ...]]) -> float:
    """Largest difference between the batched helpers and one-context
    :class:`spectheory.blocks.real.CausalLM` forwards (float32 models: about 1e-6)."""
    from spectheory.blocks.real import CausalLM

    ct, cd = CausalLM(target, kv_cache=False), CausalLM(draft, kv_cache=False)
    db = DraftBatch(draft, chunk=2)
    q0 = db(contexts)
    x = [(*c, int(np.argmax(r))) for c, r in zip(contexts, q0, strict=True)]
    q1 = db(x)  # the KV-cached step
    P = TargetBatch(target, chunk=2)(contexts + x)
    diffs = [np.abs(q0[i] - cd(c)).max() for i, c in enumerate(contexts)]
    diffs += [np.abs(q1[i] - cd(h)).max() for i, h in enumerate(x)]
    diffs += [np.abs(P[i] - ct(h)).max() for i, h in enumerate(contexts + x)]
    return float(max(diffs))


def real_rows(B: int) -> tuple[list[dict[str, Any]], float]:
    import torch

    from spectheory.models import layer_skip, load_model

    torch.manual_seed(0)
    target, tok = load_model("smollm2")
    draft = layer_skip(target, REAL_SKIP)
    contexts = real_contexts(tok, B)
    check = self_check(target, draft, contexts[:4])
    print(f"batched forwards vs spectheory.blocks.real.CausalLM (4 contexts): max |diff| {check:.1e}")
    rows = []
    for backend in ("numpy", "jax"):
        tb, db = TargetBatch(target), DraftBatch(draft)
        P, Q = _Memo(tb), _Memo(db)
        for v in ("sd", "block"):
            t_before, d_before = P.seconds, Q.seconds
            t0 = time.perf_counter()
            res = block_acceptance_batched(
                P, Q, Chain(REAL_GAMMA), v, contexts=contexts, samples=1, seed=1, backend=backend
            )
            wall = time.perf_counter() - t0
            model_s = (P.seconds - t_before) + (Q.seconds - d_before)
            rows.append(
                {
                    "B": B,
                    "verifier": v,
                    "backend": backend,
                    "gamma": REAL_GAMMA,
                    "V": int(target.config.vocab_size),
                    "context_tokens": REAL_CTX_LEN,
                    "draft": f"SmolLM2-135M, {REAL_SKIP} of 30 layers skipped",
                    "wall_s": wall,
                    "model_s": model_s,
                    "rest_s": wall - model_s,
                    "target_forwards": tb.forwards,
                    "target_tokens": tb.tokens,
                    "draft_forwards": db.forwards,
                    "draft_tokens": db.tokens,
                    "mean": res.mean,
                    "stderr": res.stderr,
                }
            )
            r = rows[-1]
            print(
                f"| SmolLM2 | {B} | {v} | {backend} | {wall:.1f} s | {model_s:.1f} s "
                f"| {r['rest_s'] * 1e3:.0f} ms | {res.mean:.3f} ± {res.stderr:.3f} |",
                flush=True,
            )
    return rows, check


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--real", action="store_true", help="add the SmolLM2-135M rows")
    ap.add_argument("--real-contexts", type=int, default=1000)
    ap.add_argument("--no-loop", action="store_true", help="skip the loop of block_acceptance")
    args = ap.parse_args()
    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    (p, pi, pT), (q, qi, qT) = markov(rng), markov(rng)
    P, Q = batched(pi, pT), batched(qi, qT)
    rows = []
    print(
        "| B | verifier | numpy | jax | jax / numpy | jax first call | loop | loop / numpy "
        "| numpy mean | jax mean |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for B in (200, 400) if args.quick else (1000, 4000):
        contexts = [tuple(int(t) for t in rng.integers(0, V, CTX_LEN)) for _ in range(B)]
        for v in ("sd", "block"):

            def run(backend: str, v: str = v, contexts: list = contexts) -> Any:
                return block_acceptance_batched(
                    P, Q, Chain(GAMMA), v, contexts=contexts, samples=SAMPLES, seed=1, backend=backend
                )

            t_first, res_j = timed(lambda: run("jax"), 1)  # compiles for this shape
            best = interleaved({"numpy": lambda: run("numpy"), "jax": lambda: run("jax")}, args.reps, 60.0)
            res_n = run("numpy")

            def loop(v: str = v, contexts: list = contexts) -> float:
                return float(
                    np.mean(
                        [
                            block_acceptance(
                                p, q, Chain(GAMMA), v, context=c, method="mc", samples=SAMPLES, seed=i
                            ).mean
                            for i, c in enumerate(contexts)
                        ]
                    )
                )

            t_l, loop_mean = (float("nan"), float("nan")) if args.no_loop else timed(loop, 1)
            t_n, t_j = best["numpy"], best["jax"]
            rows.append(
                {
                    "B": B,
                    "verifier": v,
                    "gamma": GAMMA,
                    "V": V,
                    "samples_per_context": SAMPLES,
                    "numpy_s": t_n,
                    "jax_s": t_j,
                    "jax_over_numpy": t_j / t_n,
                    "jax_first_call_s": t_first,
                    "loop_s": t_l,
                    "loop_over_numpy": t_l / t_n,
                    "numpy_mean": res_n.mean,
                    "numpy_stderr": res_n.stderr,
                    "jax_mean": res_j.mean,
                    "jax_stderr": res_j.stderr,
                    "loop_mean": loop_mean,
                }
            )
            print(
                f"| {B} | {v} | {t_n * 1e3:.0f} ms | {t_j * 1e3:.0f} ms | {t_j / t_n:.2f} "
                f"| {t_first * 1e3:.0f} ms | {t_l * 1e3:.0f} ms | {t_l / t_n:.1f}x "
                f"| {res_n.mean:.3f} ± {res_n.stderr:.3f} | {res_j.mean:.3f} ± {res_j.stderr:.3f} |",
                flush=True,
            )
    real: list[dict[str, Any]] = []
    check = None
    if args.real:
        print("\n| pair | B | verifier | backend | wall | in the models | rest | mean |")
        print("|---|---:|---|---|---:|---:|---:|---:|")
        real, check = real_rows(args.real_contexts)
    import jax

    result = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jax_devices": [str(d) for d in jax.devices()],
        "quick": args.quick,
        "reps": args.reps,
        "rows": rows,
        "real_rows": real,
        "real_max_diff_vs_causallm": check,
    }
    if not args.quick:
        OUT.write_text(json.dumps(result, indent=1, default=float))
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
