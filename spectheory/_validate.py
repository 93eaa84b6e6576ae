"""Input validation: the one place where user data is checked, with messages that name the argument,
the batch row and the problem.

All errors are :class:`ValueError` (``SpecTheoryInputError`` subclasses it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .tolerances import SUM_ATOL_FLOAT32, SUM_ATOL_FLOAT64, SUM_EPS_FACTOR


class SpecTheoryInputError(ValueError):
    """Invalid input to a spectheory function (a :class:`ValueError`)."""


def _row_label(idx: tuple[int, ...]) -> str:
    if not idx:
        return ""
    return f", row {idx[0]}" if len(idx) == 1 else f", row {idx}"


def sum_tolerance(dtype: np.dtype) -> float:
    """The documented tolerance on ``|sum - 1|`` for inputs of ``dtype``.

    ``SUM_ATOL_FLOAT64`` for float64 (and integer/exact input converted to float64), else the larger
    of ``SUM_ATOL_FLOAT32`` and ``SUM_EPS_FACTOR`` times the machine epsilon of ``dtype``: a row
    whose entries are the correctly rounded values of a distribution sums to 1 within half an
    epsilon (each entry is off by at most ``eps/2`` of itself), so float16 rows (eps ~ 9.8e-4),
    which can sum to 1.000122, are accepted, and errors far beyond rounding are still rejected.
    """
    dt = np.dtype(dtype)
    if dt == np.float64:
        return SUM_ATOL_FLOAT64
    try:
        eps = float(np.finfo(dt).eps)
    except (TypeError, ValueError):  # not a floating dtype
        return SUM_ATOL_FLOAT32
    return max(SUM_ATOL_FLOAT32, SUM_EPS_FACTOR * eps)


def check_rng(rng: Any, name: str = "rng") -> np.random.Generator:
    """Validate a random generator argument: a :class:`numpy.random.Generator` (e.g.
    ``numpy.random.default_rng(seed)``); anything else (None, a seed, a legacy ``RandomState``)
    raises a :class:`SpecTheoryInputError` naming the argument."""
    if not isinstance(rng, np.random.Generator):
        raise SpecTheoryInputError(
            f"argument {name!r}: expected a numpy.random.Generator (e.g. "
            f"numpy.random.default_rng(0)), got {type(rng).__name__} {rng!r:.60}"
        )
    return rng


def as_distribution(
    x: Any,
    name: str,
    *,
    normalize: bool = False,
    allow_batch: bool = True,
    atol: float | None = None,
) -> np.ndarray:
    """Validate a probability vector ``(V,)`` or a batch ``(B, V)`` and return it as float64.

    Parameters
    ----------
    x
        Array-like of probabilities (numpy, JAX, torch CPU tensors, lists, Fractions are converted).
    name
        Argument name used in error messages.
    normalize
        If True, each row is divided by its sum (which must still be finite and positive). Never done
        silently.
    allow_batch
        Whether a 2-D batch is accepted.
    atol
        Tolerance on ``|sum - 1|``; default :func:`sum_tolerance` of the input dtype.

    Raises
    ------
    ValueError
        On a wrong shape, an empty vocabulary, a non-finite or negative entry, or a row whose sum is
        not 1 within the tolerance. The message names ``name`` and the row.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged nested lists, exotic inputs
        raise SpecTheoryInputError(f"argument {name!r}: cannot convert to an array ({exc})") from exc
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise SpecTheoryInputError(
                f"argument {name!r}: entries must be real numbers ({exc})"
            ) from exc
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise SpecTheoryInputError(
            f"argument {name!r}: expected real probabilities, got dtype {arr.dtype}"
        )
    in_dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float64)
    max_ndim = 2 if allow_batch else 1
    if arr.ndim == 0 or arr.ndim > max_ndim:
        want = "(V,) or (B, V)" if allow_batch else "(V,)"
        raise SpecTheoryInputError(
            f"argument {name!r}: expected shape {want}, got shape {arr.shape}"
        )
    if arr.shape[-1] == 0:
        raise SpecTheoryInputError(f"argument {name!r}: empty vocabulary (V = 0)")
    if arr.ndim == 2 and arr.shape[0] == 0:
        raise SpecTheoryInputError(f"argument {name!r}: empty batch (B = 0)")
    a = arr.astype(np.float64, copy=True)
    finite = np.isfinite(a)
    if not finite.all():
        idx = np.argwhere(~finite)[0]
        bad = a[tuple(idx)]
        raise SpecTheoryInputError(
            f"argument {name!r}{_row_label(tuple(int(i) for i in idx[:-1]))}: "
            f"entry {int(idx[-1])} is {bad} (probabilities must be finite)"
        )
    neg = a < 0
    if neg.any():
        idx = np.argwhere(neg)[0]
        raise SpecTheoryInputError(
            f"argument {name!r}{_row_label(tuple(int(i) for i in idx[:-1]))}: "
            f"entry {int(idx[-1])} is negative ({a[tuple(idx)]!r})"
        )
    sums = a.sum(axis=-1)
    if normalize:
        bad = ~(sums > 0)
        if np.any(bad):
            row = tuple(int(i) for i in np.argwhere(np.atleast_1d(bad))[0]) if a.ndim == 2 else ()
            raise SpecTheoryInputError(
                f"argument {name!r}{_row_label(row)}: cannot normalize a row that sums to 0"
            )
        return a / sums[..., None]
    tol = sum_tolerance(in_dtype) if atol is None else atol
    off = np.abs(np.atleast_1d(sums) - 1.0)
    if np.any(off > tol):
        r = int(np.argmax(off > tol))
        row = (r,) if a.ndim == 2 else ()
        s = float(np.atleast_1d(sums)[r])
        raise SpecTheoryInputError(
            f"argument {name!r}{_row_label(row)}: entries sum to {s!r}, not 1 "
            f"(tolerance {tol:g} for {in_dtype}); pass normalize=True to rescale"
        )
    return a


def check_n(n: Any, name: str = "n") -> int:
    """Validate a number of drafts (an integer >= 1)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise SpecTheoryInputError(f"argument {name!r}: must be an integer, got {n!r}")
    if n < 1:
        raise SpecTheoryInputError(f"argument {name!r}: must be >= 1, got {n}")
    return int(n)


def check_support_at_least(q: np.ndarray, n: int, name: str, what: str) -> None:
    """Raise if some row of ``q`` has fewer than ``n`` tokens of positive mass."""
    support = np.atleast_2d(q > 0).sum(axis=-1)
    bad = support < n
    if np.any(bad):
        r = int(np.argmax(bad))
        row = (r,) if q.ndim == 2 else ()
        raise SpecTheoryInputError(
            f"argument {name!r}{_row_label(row)}: only {int(support[r])} tokens have positive "
            f"probability, fewer than n = {n}; {what}"
        )


def broadcast_pair(p: np.ndarray, batch_shape: tuple[int, ...], V: int) -> np.ndarray:
    """Check that target ``p`` matches a scheme's vocabulary and batch; return ``p``.

    ``p`` may be one row shared by a batched scheme, or a batch for an unbatched scheme (the scheme is
    then broadcast by the caller).
    """
    if p.shape[-1] != V:
        raise SpecTheoryInputError(
            f"argument 'p': vocabulary size {p.shape[-1]} does not match the scheme's V = {V}"
        )
    if p.ndim == 2 and batch_shape and p.shape[0] != batch_shape[0]:
        raise SpecTheoryInputError(
            f"argument 'p': batch size {p.shape[0]} does not match the scheme's batch size "
            f"{batch_shape[0]}"
        )
    return p


def _is_exact_number(x: Any) -> bool:
    """Whether ``x`` is an exact rational (int, numpy integer, Fraction, sympy Rational/Integer)."""
    import numbers

    return isinstance(x, numbers.Rational) and not isinstance(x, (bool, np.bool_))


def exact_distribution(x: Any, name: str, *, normalize: bool = False) -> Any:
    r"""The exact rational entries of a distribution, or None when any entry is not exact.

    Entries that are ``int``, numpy integers, :class:`fractions.Fraction` or sympy ``Rational``
    are converted to :class:`fractions.Fraction`; a float anywhere gives None (the input is then a
    float distribution and :func:`as_distribution` is the check that applies). Call it *after*
    :func:`as_distribution`, which checks shape, signs and finiteness.

    Returns
    -------
    tuple of Fraction, or tuple of such tuples (a batch), or None

    Raises
    ------
    ValueError
        When the entries are exact but a row does not sum to exactly 1 (no tolerance: exact input
        means exact arithmetic), or, with ``normalize``, sums to 0. The message names ``name`` and
        the row.
    """
    from fractions import Fraction

    first = x
    while isinstance(first, (list, tuple)) and len(first) > 0:
        first = first[0]
    if isinstance(first, float):  # cheap exit for float lists (a float anywhere means None)
        return None
    arr = np.asarray(x) if not isinstance(x, (list, tuple)) else np.asarray(x, dtype=object)
    if arr.dtype != object and not np.issubdtype(arr.dtype, np.integer):
        return None
    arr = arr.astype(object)
    if not all(_is_exact_number(v) for v in arr.flat):
        return None
    rows = [arr] if arr.ndim == 1 else list(arr)
    out = []
    for r, row in enumerate(rows):
        fr = tuple(Fraction(v) for v in row)
        total = sum(fr, Fraction(0))
        label = _row_label((r,) if arr.ndim == 2 else ())
        if normalize:
            if total <= 0:
                raise SpecTheoryInputError(
                    f"argument {name!r}{label}: cannot normalize a row that sums to 0"
                )
            fr = tuple(v / total for v in fr)
        elif total != 1:
            raise SpecTheoryInputError(
                f"argument {name!r}{label}: exact entries sum to {total}, not exactly 1; exact "
                "rational input is not rounded (pass normalize=True to rescale exactly)"
            )
        out.append(fr)
    return out[0] if arr.ndim == 1 else tuple(out)
