r"""Logits to probabilities, with the knobs decoders use: temperature, top-k, top-p, min-p.

Models hand out *logits* :math:`\ell \in [-\infty, \infty)^V`; every theorem in spectheory is about
*distributions*. This module is the bridge, for numpy, torch and JAX arrays alike, one position
``(V,)`` or a batch of positions ``(B, V)`` at a time. The output has the library and the floating
dtype of the input (integer logits become float64; float64 JAX logits need ``jax_enable_x64``).

The pipeline is the one of Hugging Face's ``generate`` (temperature, then top-k, then top-p, then
min-p), with every filter acting in logit space and a single softmax at the end:

.. math::

    z = \ell / T, \qquad
    z_y \leftarrow -\infty \ \text{unless}\ y \text{ survives every filter}, \qquad
    p = \operatorname{softmax}(z) = \frac{e^{z - \max z}}{\sum_{y'} e^{z_{y'} - \max z}}.

* **temperature** :math:`T \ge 0`. :math:`T = 0` is the limit :math:`T \to 0^+`: the uniform
  distribution on the maximisers of :math:`\ell` (one-hot when the maximum is unique). It is
  computed directly, never by dividing by a tiny :math:`T`.
* **top-k**: keep the tokens whose logit is at least the :math:`k`-th largest (ties at the threshold
  are kept, so more than :math:`k` tokens may survive).
* **top-p** (nucleus, Holtzman et al. 2020): with :math:`\pi` the current softmax sorted in
  decreasing order, keep the shortest prefix whose mass reaches :math:`p_{\text{top}}` (a token
  is kept when the mass strictly before it is below :math:`p_{\text{top}}`; ties with the last
  kept token are kept).
* **min-p**: keep :math:`y` when :math:`\pi(y) \ge p_{\min} \max_{y'} \pi(y')`, i.e.
  :math:`z_y \ge \max z + \log p_{\min}`, a test made in logit space.

Numerical stability: the max is subtracted *before* the division by :math:`T` (the difference is
exact near the max, so logits of size :math:`10^4` keep full float32 precision) and hence before
the exponential, so no entry overflows and the largest term is exactly 1; sums go through the
libraries' pairwise/cascade reductions. In float32 at :math:`V = 262{,}144` the row sums stay
within ``SUM_ATOL_FLOAT32`` of 1 and the entries agree with a float64 reference to float32 rounding
(tested in ``tests/test_logits.py``).

Validation follows the core (:mod:`spectheory._validate`): a NaN or :math:`+\infty` logit, a row of
only :math:`-\infty`, a wrong shape or a knob out of range raises :class:`ValueError` naming the
argument, the row and the problem. :math:`-\infty` is a legal logit (a masked token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validate import SpecTheoryInputError, _row_label

__all__ = ["Sampling", "probs", "to_numpy"]


@dataclass(frozen=True)
class Sampling:
    """Decoding knobs, validated at construction; ``Sampling(...)(logits)`` applies them.

    Attributes
    ----------
    temperature
        :math:`T \\ge 0`; 0 is the greedy (one-hot) limit.
    top_k
        Keep the ``top_k`` largest logits (ties kept); None for no limit.
    top_p
        Nucleus mass in :math:`(0, 1]`; None (or 1) for no limit.
    min_p
        Relative floor in :math:`[0, 1]`; None (or 0) for no limit.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None

    def __post_init__(self) -> None:
        _check_knobs(self.temperature, self.top_k, self.top_p, self.min_p)

    def __call__(self, logits: Any, *, name: str = "logits") -> Any:
        return probs(
            logits,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            min_p=self.min_p,
            name=name,
        )

    def describe(self) -> str:
        """A short human-readable summary, e.g. ``"T=1, top_k=50"``."""
        parts = [f"T={self.temperature:g}"]
        if self.top_k is not None:
            parts.append(f"top_k={self.top_k}")
        if self.top_p is not None:
            parts.append(f"top_p={self.top_p:g}")
        if self.min_p is not None:
            parts.append(f"min_p={self.min_p:g}")
        return ", ".join(parts)


def _check_knobs(
    temperature: Any, top_k: Any, top_p: Any, min_p: Any
) -> tuple[float, int | None, float | None, float | None]:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise SpecTheoryInputError(
            f"argument 'temperature': must be a real number >= 0, got {temperature!r}"
        ) from None
    if not math.isfinite(t) or t < 0:
        raise SpecTheoryInputError(f"argument 'temperature': must be finite and >= 0, got {t}")
    k: int | None = None
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
            raise SpecTheoryInputError(f"argument 'top_k': must be an integer >= 1, got {top_k!r}")
        if top_k < 1:
            raise SpecTheoryInputError(f"argument 'top_k': must be >= 1, got {top_k}")
        k = int(top_k)
    tp: float | None = None
    if top_p is not None:
        tp = float(top_p)
        if not (0.0 < tp <= 1.0):
            raise SpecTheoryInputError(f"argument 'top_p': must lie in (0, 1], got {tp}")
    mp: float | None = None
    if min_p is not None:
        mp = float(min_p)
        if not (0.0 <= mp <= 1.0):
            raise SpecTheoryInputError(f"argument 'min_p': must lie in [0, 1], got {mp}")
    return t, k, tp, mp


def _library(x: Any) -> str:
    mod = type(x).__module__
    if mod.startswith("torch"):
        return "torch"
    if mod.startswith("jax") or mod.startswith("jaxlib"):
        return "jax"
    return "numpy"


def to_numpy(x: Any) -> np.ndarray:
    """Convert a numpy/torch/JAX array (or nested list) to numpy, on the CPU, without copying
    when possible."""
    if _library(x) == "torch":
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _validate_logits(x: Any, lib: str, name: str) -> None:
    """Shape and value checks; reductions happen in the input's own library."""
    shape = tuple(x.shape)
    if len(shape) not in (1, 2):
        raise SpecTheoryInputError(
            f"argument {name!r}: expected shape (V,) or (B, V), got shape {shape}"
        )
    if shape[-1] == 0:
        raise SpecTheoryInputError(f"argument {name!r}: empty vocabulary (V = 0)")
    if len(shape) == 2 and shape[0] == 0:
        raise SpecTheoryInputError(f"argument {name!r}: empty batch (B = 0)")
    if lib == "torch":
        import torch

        nan = to_numpy(torch.isnan(x))
        pinf = to_numpy(torch.isposinf(x))
        allneg = to_numpy(torch.all(torch.isneginf(x), dim=-1))
    else:
        xp = _xp(lib)
        nan = np.asarray(xp.isnan(x))
        pinf = np.asarray(xp.isposinf(x))
        allneg = np.asarray(xp.all(xp.isneginf(x), axis=-1))
    for mask, what in ((nan, "NaN"), (pinf, "+inf")):
        if mask.any():
            idx = np.argwhere(mask)[0]
            raise SpecTheoryInputError(
                f"argument {name!r}{_row_label(tuple(int(i) for i in idx[:-1]))}: entry "
                f"{int(idx[-1])} is {what} (logits must be finite or -inf)"
            )
    allneg = np.atleast_1d(allneg)
    if allneg.any():
        r = int(np.argmax(allneg))
        row = (r,) if len(shape) == 2 else ()
        raise SpecTheoryInputError(
            f"argument {name!r}{_row_label(row)}: every logit is -inf (no token has mass)"
        )


def _xp(lib: str) -> Any:
    if lib == "jax":
        import jax.numpy as jnp

        return jnp
    return np


def probs(
    logits: Any,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    name: str = "logits",
) -> Any:
    r"""Turn logits into the sampling distribution a decoder with these knobs draws from.

    Parameters
    ----------
    logits
        ``(V,)`` or ``(B, V)`` numpy array, torch tensor or JAX array (lists are read as numpy).
        Entries are finite or :math:`-\infty`.
    temperature
        :math:`T \ge 0`; :math:`T = 0` gives the uniform distribution on the argmax set (the
        :math:`T \to 0^+` limit of :math:`\operatorname{softmax}(\ell/T)`).
    top_k, top_p, min_p
        Truncation filters applied in this order after the temperature (see the module docstring);
        None disables a filter.
    name
        Argument name used in error messages.

    Returns
    -------
    array
        Probabilities of the same library, shape and floating dtype as ``logits``; each row sums to
        1 up to the dtype's rounding.

    Raises
    ------
    ValueError
        A NaN or :math:`+\infty` logit, a row with every logit :math:`-\infty`, a wrong shape, or a
        knob out of range; the message names the argument and the row.

    Examples
    --------
    >>> from spectheory.logits import probs
    >>> probs([2.0, 1.0, 1.0], temperature=0).tolist()
    [1.0, 0.0, 0.0]
    >>> [round(v, 4) for v in probs([2.0, 1.0, 0.0], top_k=2).tolist()]
    [0.7311, 0.2689, 0.0]
    """
    t, k, tp, mp = _check_knobs(temperature, top_k, top_p, min_p)
    lib = _library(logits)
    x = logits
    if lib == "numpy":
        x = np.asarray(logits)
        if x.dtype == object or not (
            np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
        ):
            try:
                x = x.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise SpecTheoryInputError(
                    f"argument {name!r}: entries must be real numbers ({exc})"
                ) from exc
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
    elif lib == "torch":
        import torch

        if not torch.is_floating_point(x):
            x = x.to(torch.float64)
    else:
        import jax.numpy as jnp

        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float64)
    _validate_logits(x, lib, name)
    if lib == "torch":
        return _probs_torch(x, t, k, tp, mp)
    return _probs_xp(x, _xp(lib), lib, t, k, tp, mp)


def _probs_xp(
    x: Any, xp: Any, lib: str, t: float, k: int | None, tp: float | None, mp: float | None
) -> Any:
    """numpy / jax.numpy implementation (same code, two namespaces)."""
    neg = xp.asarray(-np.inf, dtype=x.dtype)
    if t == 0.0:
        # The T -> 0+ limit: all mass on the maximisers, uniformly.
        z = xp.where(x == xp.max(x, axis=-1, keepdims=True), xp.zeros_like(x), neg)
    else:
        # shift first: x - max(x) is exact near the max (Sterbenz), so large logits lose no
        # precision in the division by T
        z = (x - xp.max(x, axis=-1, keepdims=True)) / xp.asarray(t, dtype=x.dtype)
    V = x.shape[-1]
    if k is not None and k < V:
        # threshold on the raw logits: the shift and scaling above may round distinct logits
        # together; at T = 0 the argmax set is inside the top k anyway
        src = z if t == 0.0 else x
        if lib == "jax":
            import jax

            kth = jax.lax.top_k(src, k)[0][..., -1:]
        else:
            kth = np.partition(src, V - k, axis=-1)[..., V - k : V - k + 1]
        z = xp.where(src >= kth, z, neg)
    if tp is not None and tp < 1.0:
        pr = _softmax_xp(z, xp)
        order = xp.argsort(-pr, axis=-1)
        ps = xp.take_along_axis(pr, order, axis=-1)
        acc_dtype = np.float64 if lib == "numpy" else ps.dtype
        before = xp.cumsum(ps.astype(acc_dtype), axis=-1) - ps.astype(acc_dtype)
        keep_sorted = before < tp
        # smallest kept probability per row (the first sorted entry is always kept)
        thresh = xp.min(xp.where(keep_sorted, ps, xp.asarray(np.inf, dtype=ps.dtype)), axis=-1,
                        keepdims=True)
        z = xp.where(pr >= thresh, z, neg)
    if mp is not None and mp > 0.0:
        floor = xp.max(z, axis=-1, keepdims=True) + xp.asarray(math.log(mp), dtype=z.dtype)
        z = xp.where(z >= floor, z, neg)
    return _softmax_xp(z, xp)


def _softmax_xp(z: Any, xp: Any) -> Any:
    m = xp.max(z, axis=-1, keepdims=True)
    e = xp.exp(z - m)
    return e / xp.sum(e, axis=-1, keepdims=True)


def _probs_torch(x: Any, t: float, k: int | None, tp: float | None, mp: float | None) -> Any:
    import torch

    neg = torch.tensor(-math.inf, dtype=x.dtype, device=x.device)
    if t == 0.0:
        z = torch.where(x == x.amax(dim=-1, keepdim=True), torch.zeros_like(x), neg)
    else:
        z = (x - x.amax(dim=-1, keepdim=True)) / t
    V = x.shape[-1]
    if k is not None and k < V:
        src = z if t == 0.0 else x
        kth = torch.topk(src, k, dim=-1).values[..., -1:]
        z = torch.where(src >= kth, z, neg)
    if tp is not None and tp < 1.0:
        pr = torch.softmax(z, dim=-1)
        ps, _ = torch.sort(pr, dim=-1, descending=True)
        ps64 = ps.to(torch.float64)
        before = torch.cumsum(ps64, dim=-1) - ps64
        keep_sorted = before < tp
        inf = torch.tensor(math.inf, dtype=ps.dtype, device=ps.device)
        thresh = torch.where(keep_sorted, ps, inf).amin(dim=-1, keepdim=True)
        z = torch.where(pr >= thresh, z, neg)
    if mp is not None and mp > 0.0:
        floor = z.amax(dim=-1, keepdim=True) + math.log(mp)
        z = torch.where(z >= floor, z, neg)
    return torch.softmax(z, dim=-1)
