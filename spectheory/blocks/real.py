r"""Real models as conditional models ``context -> (V,)`` for block-level work.

* :class:`NGramModel` wraps a :class:`spectheory.models.NGramDraft`;
* :class:`CausalLM` wraps a ``transformers`` causal LM (the embedded SmolLM2 of
  :func:`spectheory.models.load_model`, or a :func:`~spectheory.models.layer_skip` /
  :func:`~spectheory.models.requantize` draft made from it), with a **KV cache**;
* :func:`conditional` picks the right wrapper.

Distributions are those of :func:`spectheory.models.collect`: the model's float32 logits at the
last position, turned into float64 by :class:`spectheory.logits.Sampling` (temperature, top-k,
top-p, min-p).

Caching. Both wrappers memoise the distribution of each context (a bounded LRU:
``maxsize`` contexts, ~0.4 MB each at V = 49,152). :class:`CausalLM` keeps one
``transformers.DynamicCache`` holding the keys and values of the last sequence it ran; a request
for context :math:`h` crops it to the longest common prefix of that sequence and :math:`h` (at
most :math:`|h| - 1` tokens, so at least one token is fed) and runs only the remaining tokens.
Every position of that forward pass yields a next-token distribution, so the logits of all the
prefixes it covered are kept too (a bounded LRU of logit rows): :meth:`CausalLM.prefetch` of a
drafted path is the single target call that verifies a chain. Decoding contexts share long
prefixes, so successive calls feed a few tokens each; tree branches crop back to their branching
point. ``torch`` and ``transformers`` are imported only when a wrapper is built.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validate import SpecTheoryInputError

__all__ = ["CausalLM", "NGramModel", "conditional"]


class _LRU(OrderedDict):
    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def get_(self, key: Any) -> Any:
        out = self.get(key)
        if out is not None:
            self.move_to_end(key)
        return out

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.maxsize:
            self.popitem(last=False)


def _check_maxsize(maxsize: Any) -> int:
    if isinstance(maxsize, bool) or not isinstance(maxsize, int | np.integer) or maxsize < 1:
        raise SpecTheoryInputError(f"argument 'maxsize': must be an integer >= 1, got {maxsize!r}")
    return int(maxsize)


def _key(context: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(t) for t in context)


def _sampling(sampling: Any) -> Any:
    from ..logits import Sampling

    if sampling is None:
        return Sampling()
    if not isinstance(sampling, Sampling):
        raise SpecTheoryInputError(
            f"argument 'sampling': expected a spectheory.logits.Sampling, got "
            f"{type(sampling).__name__}"
        )
    return sampling


class NGramModel:
    """A :class:`spectheory.models.NGramDraft` as a conditional model (cached by context).

    Parameters
    ----------
    ngram
        The n-gram model.
    sampling
        Decoding knobs applied to its log-probabilities (default: temperature 1, no truncation).
    maxsize
        Contexts whose distributions are kept.
    """

    def __init__(self, ngram: Any, sampling: Any = None, *, maxsize: int = 256) -> None:
        if not hasattr(ngram, "next_probs"):
            raise SpecTheoryInputError(
                f"argument 'ngram': expected a spectheory.models.NGramDraft, got "
                f"{type(ngram).__name__}"
            )
        self.ngram = ngram
        self.sampling = _sampling(sampling)
        self.V = int(ngram.V)
        self._cache = _LRU(_check_maxsize(maxsize))
        self.hits = 0
        self.misses = 0

    def __call__(self, context: Sequence[int]) -> np.ndarray:
        h = _key(context)
        out = self._cache.get_(h)
        if out is not None:
            self.hits += 1
            return out
        self.misses += 1
        out = self.sampling(np.log(self.ngram.next_probs(h)), name=f"n-gram logits after {h[-3:]}")
        out.setflags(write=False)
        self._cache.put(h, out)
        return out

    def __repr__(self) -> str:
        return f"NGramModel({self.ngram!r}, {self.sampling.describe()})"


class CausalLM:
    """A ``transformers`` causal LM as a conditional model, with a KV cache (module docstring).

    Parameters
    ----------
    model
        A decoder-only causal LM (e.g. from :func:`spectheory.models.load_model`), possibly a
        :func:`~spectheory.models.layer_skip` draft.
    sampling
        Decoding knobs (default: temperature 1, no truncation).
    kv_cache
        Reuse keys and values of the longest cached prefix (``False``: one full forward pass per
        new context, as :func:`spectheory.models.next_token_logits` does).
    maxsize
        Contexts whose distributions are kept; the logits of ``4 * maxsize`` prefixes are
        kept as well.

    Attributes
    ----------
    forward_calls, tokens_fed
        Forward passes run and tokens fed through them (for cost accounting).
    """

    def __init__(
        self, model: Any, sampling: Any = None, *, kv_cache: bool = True, maxsize: int = 64
    ) -> None:
        if not hasattr(model, "forward"):
            raise SpecTheoryInputError(
                f"argument 'model': expected a transformers causal LM, got {type(model).__name__}"
            )
        import torch

        self._torch = torch
        self.model = model
        self.sampling = _sampling(sampling)
        m = _check_maxsize(maxsize)
        self._probs = _LRU(m)
        self._logits = _LRU(4 * m)
        # A layer_skip draft keeps its layers' original indices; the cache grows lazily to them.
        # Positions are passed explicitly; a draft that skips layer 0 (whose cache length the
        # model would read) runs without a KV cache.
        self.kv_cache = bool(kv_cache) and 0 not in getattr(model, "spectheory_skipped", ())
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._cache: Any = None
        self._seq: tuple[int, ...] = ()
        self.forward_calls = 0
        self.tokens_fed = 0
        self.hits = 0

    # ------------------------------------------------------------------ forward passes
    def _run(self, h: tuple[int, ...]) -> None:
        """Forward over ``h`` (from the longest usable cached prefix); keep every row."""
        torch = self._torch
        if self.kv_cache:
            from transformers import DynamicCache

            m = 0
            for a, b in zip(self._seq, h, strict=False):
                if a != b:
                    break
                m += 1
            keep = min(m, len(h) - 1)
            if self._cache is None or keep == 0:
                self._cache = DynamicCache()
                keep = 0
            elif keep < len(self._seq):
                self._cache.crop(-(len(self._seq) - keep))
        else:
            keep = 0
        fed = h[keep:]
        x = torch.as_tensor(np.asarray(fed, dtype=np.int64))[None, :]
        pos = torch.arange(keep, len(h), dtype=torch.long)[None, :]
        with torch.no_grad():
            if self.kv_cache:
                kw = {self._cache_kw: self._cache}
                out = self.model(input_ids=x, position_ids=pos, use_cache=True, **kw)
            else:
                out = self.model(input_ids=x, position_ids=pos, use_cache=False)
        rows = out.logits[0].numpy()  # the model's dtype (float32, or float64 in tests)
        self._seq = h if self.kv_cache else ()
        self.forward_calls += 1
        self.tokens_fed += len(fed)
        for i in range(len(fed)):
            self._logits.put(h[: keep + i + 1], rows[i].copy())

    def logits(self, context: Sequence[int]) -> np.ndarray:
        """Next-token logits after ``context`` (``(V,)``, the model's float dtype)."""
        h = _key(context)
        if not h:
            raise SpecTheoryInputError(
                "argument 'context': a transformers model needs at least one token (start from a "
                "prompt or a BOS token)"
            )
        row = self._logits.get_(h)
        if row is None:
            self._run(h)
            row = self._logits.get_(h)
        return row

    def prefetch(self, sequence: Sequence[int]) -> None:
        """Run the model over ``sequence`` once, keeping the logits after every prefix it feeds
        (the one target call that scores a drafted path)."""
        h = _key(sequence)
        if h and self._logits.get_(h) is None:
            self._run(h)

    def __call__(self, context: Sequence[int]) -> np.ndarray:
        h = _key(context)
        out = self._probs.get_(h)
        if out is not None:
            self.hits += 1
            return out
        row = self.logits(h)
        out = self.sampling(row.astype(np.float64), name=f"logits after {h[-3:]}")
        out.setflags(write=False)
        self._probs.put(h, out)
        return out

    @property
    def V(self) -> int:
        return int(self.model.config.vocab_size)

    def __repr__(self) -> str:
        return (
            f"CausalLM({type(self.model).__name__}, {self.sampling.describe()}, "
            f"kv_cache={self.kv_cache})"
        )


def conditional(model: Any, sampling: Any = None, **kwargs: Any) -> Any:
    """Wrap ``model`` as a conditional model ``context -> (V,)``.

    An :class:`~spectheory.models.NGramDraft` becomes an :class:`NGramModel`, a ``transformers``
    model a :class:`CausalLM` (``kwargs`` go to the wrapper); a wrapper is returned as is.
    """
    from ..models import NGramDraft

    if isinstance(model, NGramModel | CausalLM):
        return model
    if isinstance(model, NGramDraft):
        return NGramModel(model, sampling, **kwargs)
    if hasattr(model, "forward") and hasattr(model, "config"):
        return CausalLM(model, sampling, **kwargs)
    raise SpecTheoryInputError(
        f"argument 'model': expected an NGramDraft or a transformers causal LM, got "
        f"{type(model).__name__}"
    )
