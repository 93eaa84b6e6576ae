"""Distribution families that real target/draft pairs produce, for the benchmarks and tests.

Every family is a function ``(rng, V) -> (p, q)`` returning two float64 distributions of length
``V`` (non-negative, summing to 1 up to rounding). The base of most families is a Zipf-like
logit vector (``zipf_logits``: log-rank slope about 1.1 plus noise, randomly permuted), what a
language model's next-token logits look like in bulk. What each family does to ``p``, ``q`` and
the ratio ``p/q`` is stated in its docstring; ``FAMILIES`` maps names to functions.

``real_rows`` loads rows of real SmolLM2-135M logits (target and three offline drafts:
8 of 30 layers skipped, 4-bit re-quantised, bigram) from ``benchmarks/results/smollm2_logits.npz``
(float32 logits of 6 positions of the builtin text, 3 MB), collected once with
``python benchmarks/families.py --collect`` (needs the ``models`` extra).

Importable from the tests (``sys.path`` gets ``benchmarks/``) and from the benchmark scripts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

Pair = tuple[np.ndarray, np.ndarray]
Family = Callable[[np.random.Generator, int], Pair]

RESULTS = Path(__file__).resolve().parent / "results"
REAL_FILE = RESULTS / "smollm2_logits.npz"


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax in float64 (``-inf`` logits give exact zeros)."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - np.max(z))
    return e / e.sum()


def zipf_logits(rng: np.random.Generator, V: int, slope: float = 1.1, noise: float = 0.5) -> np.ndarray:
    """``-slope * log(rank) + N(0, noise^2)``, ranks randomly permuted over the vocabulary."""
    z = -slope * np.log1p(np.arange(V, dtype=np.float64)) + noise * rng.normal(size=V)
    return z[rng.permutation(V)]


def _draft_logits(rng: np.random.Generator, z: np.ndarray, sd: float = 1.0) -> np.ndarray:
    return z + sd * rng.normal(size=z.size)


def _temperature(T: float) -> Family:
    def fam(rng: np.random.Generator, V: int) -> Pair:
        z = zipf_logits(rng, V)
        return softmax(z / T), softmax(_draft_logits(rng, z) / T)

    fam.__doc__ = (
        f"Target and draft sampled at temperature {T}: p/q spreads as exp(noise / T); at low T both "
        "are nearly one-hot and most masses are far below 1e-300 relative (exact zeros after exp)."
    )
    return fam


def topk_draft(rng: np.random.Generator, V: int, k: int = 50) -> Pair:
    """Draft truncated to its top-k (exact zeros, q/p = 0 for most tokens, p/q = inf), target full."""
    z = zipf_logits(rng, V)
    zq = _draft_logits(rng, z)
    cut = np.partition(zq, V - k)[V - k]
    return softmax(z), softmax(np.where(zq >= cut, zq, -np.inf))


def topp_both(rng: np.random.Generator, V: int, top_p: float = 0.9) -> Pair:
    """Target and draft both nucleus-truncated at top-p 0.9 (zeros in both, different supports:
    p/q takes the values 0, inf and 0/0 treated as q = 0)."""

    def nucleus(z: np.ndarray) -> np.ndarray:
        x = softmax(z)
        o = np.argsort(-x, kind="stable")
        c = np.cumsum(x[o])
        keep = o[: int(np.searchsorted(c, top_p)) + 1]
        y = np.zeros_like(x)
        y[keep] = x[keep]
        return y / y.sum()

    z = zipf_logits(rng, V, slope=1.4)
    return nucleus(z), nucleus(_draft_logits(rng, z, 0.7))


def distilled(rng: np.random.Generator, V: int) -> Pair:
    """Distilled draft: target logits plus small noise (sd 0.05); p/q crowds around 1."""
    z = zipf_logits(rng, V)
    return softmax(z), softmax(_draft_logits(rng, z, 0.05))


def quantised(rng: np.random.Generator, V: int) -> Pair:
    """Quantised draft: target logits rounded to a grid of 0.25 (q takes few distinct values:
    large tie groups in q, p/q varies only with the target)."""
    z = zipf_logits(rng, V)
    return softmax(z), softmax(np.round(z * 4.0) / 4.0)


def layer_skip_like(rng: np.random.Generator, V: int) -> Pair:
    """Layer-skip-like draft: target logits shrunk and blended with independent logits
    (0.7 z + 0.3 z' + noise), a flatter, partly decorrelated draft."""
    z = zipf_logits(rng, V)
    z2 = zipf_logits(rng, V)
    return softmax(z), softmax(0.7 * z + 0.3 * z2 + 0.3 * rng.normal(size=V))


def ngram_sparse(rng: np.random.Generator, V: int) -> Pair:
    """n-gram-like draft: 0.7 of the mass on 20 observed continuations, the rest an add-delta
    unigram (tiny but positive everywhere, a different Zipf permutation): p/q spans ~1e6."""
    z = zipf_logits(rng, V)
    p = softmax(z)
    top = np.argsort(-z)[:200]
    seen = rng.choice(top, size=20, replace=False)
    counts = rng.integers(1, 30, size=20).astype(np.float64)
    uni = softmax(zipf_logits(rng, V, slope=1.0, noise=0.0)) + 1e-7
    q = 0.3 * uni / uni.sum()
    np.add.at(q, seen, 0.7 * counts / counts.sum())
    return p, q / q.sum()


def mixture(rng: np.random.Generator, V: int) -> Pair:
    """Draft = mixture of two models (one close to the target, one unrelated), 50/50."""
    z = zipf_logits(rng, V)
    q = 0.5 * softmax(_draft_logits(rng, z, 0.5)) + 0.5 * softmax(zipf_logits(rng, V))
    return softmax(z), q / q.sum()


def near_one_hot(rng: np.random.Generator, V: int) -> Pair:
    """Adversarial: masses 1e-300..1e-12 beside 1 - eps. The draft's top token is the target's
    with probability 1/2, else another one; the other masses are log-uniform in [1e-300, 1e-12]."""

    def peaked(top: int) -> np.ndarray:
        x = 10.0 ** rng.uniform(-300, -12, size=V)
        x[top] = 0.0
        x[top] = 1.0 - x.sum()
        return x

    t = int(rng.integers(V))
    u = t if rng.random() < 0.5 else int(rng.integers(V))
    return peaked(t), peaked(u)


def ties_flat(rng: np.random.Generator, V: int) -> Pair:
    """Ties: a uniform draft and a target constant on 4 blocks (p/q takes 4 values, one huge
    tie group each)."""
    levels = np.array([1.0, 2.0, 3.0, 5.0])[rng.integers(0, 4, size=V)]
    return levels / levels.sum(), np.full(V, 1.0 / V)


def two_peaks_low_temp(rng: np.random.Generator, V: int) -> Pair:
    """Draft at temperature 0.05 with a target at 1 (a greedy-ish draft): q is nearly one-hot,
    p is not (ratio p/q up to 1e300)."""
    z = zipf_logits(rng, V)
    return softmax(z), softmax(_draft_logits(rng, z, 0.3) / 0.05)


FAMILIES: dict[str, Family] = {
    "temp_0.01": _temperature(0.01),
    "temp_0.1": _temperature(0.1),
    "temp_0.5": _temperature(0.5),
    "temp_2": _temperature(2.0),
    "topk_draft": topk_draft,
    "topp_both": topp_both,
    "distilled": distilled,
    "quantised": quantised,
    "layer_skip": layer_skip_like,
    "ngram": ngram_sparse,
    "mixture": mixture,
    "near_one_hot": near_one_hot,
    "ties_flat": ties_flat,
    "greedy_draft": two_peaks_low_temp,
}


def make(name: str, V: int, seed: int = 0) -> Pair:
    """One ``(p, q)`` pair of family ``name`` at vocabulary ``V`` (deterministic in ``seed``)."""
    rng = np.random.default_rng([seed, V, sum(map(ord, name))])
    p, q = FAMILIES[name](rng, V)
    return np.ascontiguousarray(p), np.ascontiguousarray(q)


def real_rows(path: Path = REAL_FILE) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(label, p, q)]`` of the stored SmolLM2 rows (empty if the file is missing): target at
    temperature 1 against each draft, and the same at temperature 0.3 (sharper rows)."""
    if not path.exists():
        return []
    d = np.load(path)
    out = []
    for draft in ("skip", "quant", "ngram"):
        for i, pos in enumerate(d["pos"]):
            for T in (1.0, 0.3):
                p = softmax(d["target"][i].astype(np.float64) / T)
                q = softmax(d[draft][i].astype(np.float64) / T)
                out.append((f"smollm2_{draft}_T{T:g}_pos{int(pos)}", p, q))
    return out


def collect_real(path: Path = REAL_FILE, positions: int = 6) -> None:
    """Collect SmolLM2 target/draft logits on the builtin text (teacher forcing) and store
    ``positions`` rows of each as float32 (needs the ``models`` extra; ~1 minute)."""
    from spectheory import models

    target, tok = models.load_model("smollm2")
    ids = np.asarray(tok.encode(models.builtin_text()))[:64]
    logits = {"target": models.next_token_logits(target, ids)}
    logits["skip"] = models.next_token_logits(models.layer_skip(target, 8), ids)
    logits["quant"] = models.next_token_logits(models.requantize(target, 4), ids)
    logits["ngram"] = models.next_token_logits(models.NGramDraft(tok, 2), ids)
    pos = np.linspace(4, len(ids) - 1, positions).astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, pos=pos, ids=ids, **{k: v[pos].astype(np.float32) for k, v in logits.items()})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collect", action="store_true", help="collect the SmolLM2 rows")
    args = ap.parse_args()
    if args.collect:
        collect_real()
    for name in FAMILIES:
        p, q = make(name, 32768)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = p / q
        print(f"{name:14s} max p {p.max():.3g} max q {q.max():.3g} "
              f"zeros p {np.sum(p == 0)} q {np.sum(q == 0)} "
              f"distinct ratios {np.unique(r).size}")
