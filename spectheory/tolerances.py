"""Named numerical tolerances, in one place.

Every comparison in the library and in its tests uses one of these constants, so that a change of
tolerance is a visible, reviewed change of contract.
"""

from __future__ import annotations

#: Allowed |sum(p) - 1| for float64 inputs (a softmax summed in float64 over 256k entries is off by
#: well under 1e-12; 1e-9 leaves room for data that went through a text format).
SUM_ATOL_FLOAT64: float = 1e-9

#: Allowed |sum(p) - 1| for float32 (and lower precision) inputs: a float32 softmax over 256k tokens
#: is typically off by ~1e-5; larger errors mean the input is not a distribution.
SUM_ATOL_FLOAT32: float = 1e-4

#: For inputs of lower precision than float32 (float16, bfloat16) the sum tolerance is this many
#: machine epsilons of the input dtype when that is larger than ``SUM_ATOL_FLOAT32``: correctly
#: rounded entries put the sum within eps/2 of 1; 8 eps leaves room for a softmax computed in that
#: dtype (float16: 7.8e-3).
SUM_EPS_FACTOR: float = 8.0

#: Gap allowed between a certificate's dual value (witness) and primal value (plan) for the result to
#: count as certified optimal.
CERT_GAP_TOL: float = 1e-9

#: Largest allowed violation of a plan's capacity constraints (after the solver's plan is cleaned).
PLAN_FEAS_TOL: float = 1e-12

#: Feasibility / optimality tolerances passed to HiGHS (tighter than its 1e-7 defaults).
HIGHS_TOL: float = 1e-10

#: Tuple masses below this are dropped before an LP is built; their total is reported in
#: ``Result.info["dropped_mass"]`` and bounds the effect on the value.
LP_MASS_FLOOR: float = 1e-250

#: Largest number of draft tuples a scheme will enumerate for an explicit LP.
MAX_TUPLES: int = 2_000_000

#: Largest vocabulary for the brute-force ``"subsets"`` method (2**V subsets).
MAX_SUBSETS_V: int = 20
