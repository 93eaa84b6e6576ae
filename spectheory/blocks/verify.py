r"""Block-level verifiers: one target call turns a draft realisation into an output.

A block verifier sees the realised draft structure (``tokens``, see
:mod:`spectheory.blocks.problem`) and the target's conditionals, and outputs a pair
:math:`(u, y)`: a node :math:`u` whose path is accepted (the root, node 0, when nothing is) and
one more token :math:`y` (the correction, or the bonus token when :math:`u` is a leaf). The block's
output is :math:`z = \text{path}(u)\cdot y`; its *accepted length* is the depth of :math:`u`.
The rule is lossless when, for every sequence :math:`s` of length :math:`\gamma + 1`,
:math:`\sum_{z \preceq s} \Pr(\text{out} = z)\, p(s_{|z|+1:} \mid z) = p(s)` (theory section 10).

Every rule has two faces: :meth:`BlockVerifier.output_law` (the exact conditional law of
:math:`(u, y)` given one realisation, as ``{u: mass over y}``) and :meth:`BlockVerifier.sample`
(what a decoder calls).

Token-level rules down the tree (:class:`TokenLevel`, the SpecInfer / Sequoia / EAGLE way). The
verifier stands on a set :math:`S` of nodes that share one path (first the root). The candidates
are the children of all nodes of :math:`S`, in node order; the token-level rule verifies their
tokens as one draft tuple (for the ``"iid"`` scheme the merged children are i.i.d. from
:math:`q(\cdot\mid\text{path})`, so the tuple has the law the rule expects; for the other schemes
siblings are distinct and :math:`S` stays one node). If it accepts token :math:`y`, the verifier
moves to the candidates carrying :math:`y` and repeats; if it rejects, it outputs the rule's
correction token; at a leaf it outputs a bonus token from :math:`p`. Merging is how SpecTr
verifies several chains that share a prefix. Where a node set has a single candidate and the rule
verifies only a fixed number of drafts (``"khisti"``, ``"spechub"``: two), single-draft
speculative sampling verifies it. On the ``"greedy"`` (deterministic top-:math:`k`) scheme the
rules ``"greedy"`` and ``"optimal"`` both mean the optimal rule for a fixed draft set :math:`D`:
draw :math:`y \sim p` and accept when :math:`y \in D` (acceptance :math:`p(D)`; Hu et al.'s
greedy verifier with no sampled draft).
"""

from __future__ import annotations

import abc
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from .._validate import SpecTheoryInputError
from ..verifiers.base import Verifier
from .drafts import Tree
from .problem import BlockProblem

__all__ = [
    "BLOCK_RULES",
    "BlockVerifier",
    "OutputLaw",
    "TokenLevel",
    "block_verifier",
    "block_verifier_names",
]

#: Exact conditional output law of one realisation: node -> mass over the output token (V,).
OutputLaw = dict[int, np.ndarray]


class BlockVerifier(abc.ABC):
    """Base class of block-level rules (module docstring)."""

    name: ClassVar[str] = ""
    lossless: ClassVar[bool] = True

    def check(self, tree: Tree) -> None:  # noqa: B027 - optional hook
        """Raise a :class:`ValueError` when the rule does not apply to ``tree``."""

    @abc.abstractmethod
    def output_law(self, problem: BlockProblem, tokens: tuple[int, ...]) -> OutputLaw:
        """Exact law of ``(u, y)`` given the realisation ``tokens``: ``{u: mass (V,)}``, masses
        summing to 1 (floats, or Fractions on exact problems)."""

    @abc.abstractmethod
    def sample(
        self, problem: BlockProblem, tokens: tuple[int, ...], rng: np.random.Generator
    ) -> tuple[int, int]:
        """Verify one realisation: return ``(u, y)``."""


def add_mass(out: OutputLaw, u: int, mass: np.ndarray, V: int) -> None:
    """``out[u] += mass`` (creating the entry with the dtype of ``mass``)."""
    if u in out:
        out[u] = out[u] + mass
    else:
        out[u] = np.array(mass, copy=True)


def _categorical(rng: np.random.Generator, w: np.ndarray) -> int:
    w = np.asarray(w, dtype=np.float64)
    c = np.cumsum(w)
    return int(min(np.searchsorted(c, rng.random() * c[-1], side="right"), len(w) - 1))


# ---------------------------------------------------------------------- token-level down the tree
_FIXED_N = {"khisti": 2, "spechub": 2}


class TokenLevel(BlockVerifier):
    """A token-level rule of :mod:`spectheory.verifiers` applied node by node (module docstring)."""

    def __init__(self, rule: str | Verifier, scheme: str = "iid", *, merge: bool = True) -> None:
        from .. import verifiers

        if isinstance(rule, Verifier):
            self.rule_name = rule.name
            self._make = lambda: rule
        elif isinstance(rule, str):
            cls = verifiers.get(rule)  # raises naming the argument
            self.rule_name = rule
            if rule == "optimal":
                sch = scheme if scheme in ("iid", "wor") else "iid"
                self._make = lambda: cls(sch)
            else:
                self._make = cls
        else:
            raise SpecTheoryInputError(
                f"argument 'verifier': expected a name or a Verifier, got {type(rule).__name__}"
            )
        self.rule: Verifier = self._make()
        self.scheme = scheme
        self.merge = bool(merge)
        self.lossless = bool(self.rule.lossless)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.rule_name

    # -------------------------------------------------------------- compatibility
    def check(self, tree: Tree) -> None:
        from ..schemes import IID, Hub, WithoutReplacement

        s = tree.scheme
        if s == "greedy":
            if self.rule_name not in ("greedy", "optimal"):
                raise SpecTheoryInputError(
                    f"argument 'verifier': rule {self.rule_name!r} verifies sampled drafts; the tree "
                    "drafts the top-k tokens deterministically (scheme 'greedy'): use 'greedy' or "
                    "'optimal'"
                )
            return
        want = {"iid": IID, "wor": WithoutReplacement, "hub": Hub}[s]
        sizes = {len(c) for c in tree.children if c}
        if s == "iid" and self.merge and not tree.is_chain():
            # a merged node set of an iid tree holds up to all the nodes of the next depth
            per_depth = np.bincount(np.asarray(tree.depth[1:]))
            sizes |= set(range(1, 1 + int(per_depth.max())))
        for k in sorted(sizes):
            if k == 1 and s in ("iid", "wor") and self.rule_name in _FIXED_N:
                continue  # single candidates are verified by single-draft SD
            try:
                sch = self.rule.scheme(np.full(max(k, 2), 1.0 / max(k, 2)), k)
            except ValueError as exc:
                raise SpecTheoryInputError(
                    f"argument 'verifier': rule {self.rule_name!r} cannot verify {k} children "
                    f"({exc})"
                ) from None
            ok = isinstance(sch, want) or (k == 1 and isinstance(sch, IID | WithoutReplacement))
            if not ok:
                raise SpecTheoryInputError(
                    f"argument 'verifier': rule {self.rule_name!r} verifies drafts of scheme "
                    f"{type(sch).__name__}, but the tree drafts its children by {s!r}"
                )

    # -------------------------------------------------------------- one node set
    def _node_law(self, p: np.ndarray, q: np.ndarray, drafts: list[int]) -> tuple[Any, Any]:
        if self.scheme == "greedy":
            D = np.zeros(p.shape[0], dtype=bool)
            D[drafts] = True
            zero = p * 0
            return np.where(D, p, zero), np.where(D, zero, p)
        rule = self.rule
        if len(drafts) == 1 and self.rule_name in _FIXED_N:
            from ..verifiers.sd import SD

            rule = SD()
        return rule.tuple_law(p, q, np.asarray(drafts))

    def _node_sample(
        self, p: np.ndarray, q: np.ndarray, drafts: list[int], rng: np.random.Generator
    ) -> tuple[int, bool]:
        if self.scheme == "greedy":
            y = _categorical(rng, p)
            return y, y in drafts
        rule = self.rule
        if len(drafts) == 1 and self.rule_name in _FIXED_N:
            from ..verifiers.sd import SD

            rule = SD()
        return rule.sample(p, q, np.asarray(drafts), rng)

    # -------------------------------------------------------------- the descent
    def output_law(self, problem: BlockProblem, tokens: tuple[int, ...]) -> OutputLaw:
        tree = problem.tree
        out: OutputLaw = {}

        def rec(S: list[int], w: Any) -> None:
            u = S[0]
            path = tree.path(tokens, u)
            p = problem.p(path)
            cands = [c for s in S for c in tree.children[s]]
            if not cands:
                add_mass(out, u, w * p, problem.V)
                return
            q = problem.q(path)
            drafts = [tokens[c] for c in cands]
            acc, rej = self._node_law(p, q, drafts)
            add_mass(out, u, w * np.asarray(rej), problem.V)
            for y in dict.fromkeys(drafts):
                if acc[y] > 0:
                    rec(self._next(cands, tokens, y), w * acc[y])

        rec([0], Fraction(1) if problem.exact else 1.0)
        return out

    def sample(
        self, problem: BlockProblem, tokens: tuple[int, ...], rng: np.random.Generator
    ) -> tuple[int, int]:
        tree = problem.tree
        S = [0]
        while True:
            u = S[0]
            path = tree.path(tokens, u)
            p = problem.p(path)
            cands = [c for s in S for c in tree.children[s]]
            pf = p.astype(np.float64) if p.dtype == object else p
            if not cands:
                return u, _categorical(rng, pf)
            q = problem.q(path)
            qf = q.astype(np.float64) if q.dtype == object else q
            drafts = [tokens[c] for c in cands]
            y, ok = self._node_sample(pf, qf, drafts, rng)
            if not ok:
                return u, int(y)
            S = self._next(cands, tokens, y)

    def _next(self, cands: list[int], tokens: tuple[int, ...], y: int) -> list[int]:
        """The node set after accepting ``y``: every candidate carrying ``y`` (merged), or only
        the first one (``merge=False``: each node's own subtree, as with fresh drafts)."""
        S = [c for c in cands if tokens[c] == y]
        return S if self.merge else S[:1]


# ---------------------------------------------------------------------- registry
#: Block-level rules by name (filled by :mod:`spectheory.blocks.rules`).
BLOCK_RULES: dict[str, type[BlockVerifier]] = {}


def block_verifier_names() -> list[str]:
    """Every name ``verifier=`` accepts: block-level rules and token-level rules."""
    from .. import verifiers
    from . import rules  # noqa: F401  (registers the block-level rules)

    return sorted(set(BLOCK_RULES) | set(verifiers.names()))


def block_verifier(verifier: Any, tree: Tree) -> BlockVerifier:
    """Resolve ``verifier`` (a name, a token-level :class:`~spectheory.verifiers.base.Verifier`
    or a :class:`BlockVerifier`) for ``tree`` and check that it applies."""
    from . import rules  # noqa: F401  (registers the block-level rules)

    if isinstance(verifier, BlockVerifier):
        v = verifier
    elif isinstance(verifier, str) and verifier in BLOCK_RULES:
        v = BLOCK_RULES[verifier]()
    elif isinstance(verifier, str | Verifier):
        if isinstance(verifier, str):
            from .. import verifiers

            if verifier not in verifiers.names():
                raise SpecTheoryInputError(
                    f"argument 'verifier': unknown rule {verifier!r} (known: "
                    f"{', '.join(block_verifier_names())})"
                )
        v = TokenLevel(verifier, tree.scheme)
    else:
        raise SpecTheoryInputError(
            f"argument 'verifier': expected a rule name, a Verifier or a BlockVerifier, got "
            f"{type(verifier).__name__}"
        )
    v.check(tree)
    return v
