r"""spectheory: the theory of multi-draft speculative sampling.

Compute the optimal acceptance :math:`\alpha^*` of any draft scheme with a certificate, measure how far
real verifiers fall below it, derive formulas symbolically, and run it all batched.

The top level stays light: numpy only. JAX, cvxpy, sympy, torch and transformers are imported by the
functions that need them.
"""

from __future__ import annotations

from ._validate import SpecTheoryInputError
from .api import available_methods, optimal_acceptance
from .certify import certify
from .gap import gap
from .result import Certificate, Duals, Plan, Result, Status
from .schemes import IID, Greedy, Hub, Independent, Joint, Scheme, WithoutReplacement

__version__ = "0.1.0"

__all__ = [
    "IID",
    "Certificate",
    "Duals",
    "Greedy",
    "Hub",
    "Independent",
    "Joint",
    "Plan",
    "Result",
    "Scheme",
    "SpecTheoryInputError",
    "Status",
    "WithoutReplacement",
    "__version__",
    "available_methods",
    "certify",
    "gap",
    "optimal_acceptance",
]
