#!/usr/bin/env bash
# Checks for a machine with an NVIDIA GPU (not run by CI; each step has a time limit, 10 minutes in all):
#   1. installs the CUDA 12 build of the installed JAX version (skipped where JAX already sees a GPU),
#   2. runs the golden tests (the networks against the reference's vectors, float32 and bf16) on the GPU,
#   3. benchmarks the full-size networks (experiments/bench_model.py) in float32 and bf16 and sessions
#      (bench_session.py) at 480p,
#   4. times 8 robot rounds of an 80-frame 480p video with the full-size networks (2 objects).
# Logs go to LOG_DIR (default: $OUT where set, else device_check_logs/).
#
#   experiments/device_check.sh [LOG_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
log_dir=${1:-${OUT:-device_check_logs}}
mkdir -p "$log_dir"
python=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# One compilation cache for every step: the benchmark processes compile the same networks.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/atnet_jax_device_cache}
unset XLA_FLAGS JAX_PLATFORMS

has_gpu() { "$python" -c 'import jax, sys; sys.exit(0 if jax.default_backend() == "gpu" else 1)' 2>/dev/null; }

failed=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, report its duration; later steps run anyway
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo "== $name (limit ${limit} s)"
  if timeout "$limit" "$@" 2>&1 | tee "$log_dir/$name.log"; then
    echo "== $name: done in $((SECONDS - start)) s"
  else
    echo "== $name: FAILED after $((SECONDS - start)) s (exit ${PIPESTATUS[0]}; 124 = time limit)"
    failed+=("$name")
  fi
}

if ! has_gpu; then
  version=$("$python" -c 'import jax; print(jax.__version__)')
  step install 120 "$python" -m pip install --quiet "jax[cuda12]==$version"
fi
has_gpu || { echo "JAX sees no GPU after installing jax[cuda12]" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$log_dir/gpu.csv"
"$python" -c 'import jax; print("jax", jax.__version__, jax.devices())' | tee -a "$log_dir/gpu.csv"

step golden 90 "$python" -m pytest -q -p no:cacheprovider tests/test_golden.py tests/test_precision.py
step bench_model 120 "$python" experiments/bench_model.py --sizes 480x854 --repeats 5 --skip-kernels --skip-unsplit
step bench_model_bf16 120 "$python" experiments/bench_model.py --sizes 480x854 --repeats 5 --skip-kernels \
  --skip-unsplit --precision bf16
step bench_session 90 "$python" experiments/bench_session.py --frames 50 --height 480 --width 854 --objects 1,2
step robot_rounds 60 "$python" experiments/bench_session.py --robot-rounds 8 --frames 80 --height 480 \
  --width 854 --objects 2
echo "device check done in $SECONDS s; logs in $log_dir"
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
