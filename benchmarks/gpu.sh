#!/usr/bin/env bash
# JAX backend on the GPU machine: correctness checks first, then the timings of the issue.
#
# Needs only python with numpy + jax (CUDA); no network, no pip install: the package is used from
# the source tree with PYTHONPATH=. . Run from the repository root:
#
#     bash benchmarks/gpu.sh            # results in $OUT if set, else benchmarks/results
#
# Total time is bounded (under 10 minutes: the step timeouts add up to 590 s): each step has its own timeout and a failure in one step does
# not stop the next. Steps: correctness checks; the alpha* table (sort path and sort-free path,
# i.i.d. and without replacement); the optimal verifier's setup/sampling on the device; the
# distribution-family table of the numpy fast paths on the host CPU (issue 16).
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-benchmarks/results}"
mkdir -p "$OUT_DIR"
export PYTHONPATH=.
# Let the benchmark use most of the GPU memory without preallocating all of it.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.85}"
PY="${PYTHON:-python3}"

echo "== environment"
"$PY" -c "import jax, numpy; print('jax', jax.__version__, 'numpy', numpy.__version__, jax.devices())" \
    2>&1 | tee "$OUT_DIR/gpu_env.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null \
    | tee -a "$OUT_DIR/gpu_env.txt" || true

echo "== correctness (benchmarks/gpu_check.py)"
timeout 110 "$PY" benchmarks/gpu_check.py --out "$OUT_DIR" --budget 80 2>&1 \
    | tee "$OUT_DIR/gpu_check.log"
check_rc=${PIPESTATUS[0]}

echo "== timings (benchmarks/bench_jax.py --gpu)"
timeout 150 "$PY" benchmarks/bench_jax.py --gpu --out "$OUT_DIR" --budget 120 \
    --note "gpu.sh" 2>&1 | tee "$OUT_DIR/bench_jax_gpu.log"
bench_rc=${PIPESTATUS[0]}

echo "== optimal verifier (benchmarks/bench_optimal_verifier.py --gpu)"
timeout 170 "$PY" benchmarks/bench_optimal_verifier.py --gpu --out "$OUT_DIR" --budget-s 140 2>&1 \
    | tee "$OUT_DIR/bench_optimal_verifier_gpu.log"
opt_rc=${PIPESTATUS[0]}

echo "== JAX on every distribution family, on the device (benchmarks/bench_jax_families.py)"
# i.i.d. (sort and sort-free) and without replacement (fast path, retry pass) per family; every
# without-replacement value checked against numpy within its estimate; rc != 0 on any mismatch
timeout 100 "$PY" benchmarks/bench_jax_families.py --quick --no-real --B 8 \
    --out "$OUT_DIR/bench_jax_families_gpu.json" 2>&1 | tee "$OUT_DIR/bench_jax_families_gpu.log"
jfam_rc=${PIPESTATUS[0]}

echo "== distribution families on the host CPU (benchmarks/bench_families.py --quick; numpy)"
# every timed value is checked against the reference methods; rc != 0 on any mismatch
timeout 60 "$PY" benchmarks/bench_families.py --quick --out "$OUT_DIR/bench_families_host.json" 2>&1 \
    | tee "$OUT_DIR/bench_families_host.log"
fam_rc=${PIPESTATUS[0]}

echo "== done: gpu_check rc=$check_rc, bench rc=$bench_rc, optimal rc=$opt_rc, jax families rc=$jfam_rc, families rc=$fam_rc; results in $OUT_DIR"
ls -l "$OUT_DIR"
exit $(( check_rc != 0 || bench_rc != 0 || opt_rc != 0 || jfam_rc != 0 || fam_rc != 0 ))
