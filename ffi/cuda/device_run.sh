#!/usr/bin/env bash
# One call on the GPU machine (issue 7): build with the CUDA kernels, benchmark, test, sanitize.
# Logs go to $OUT (the device tool's folder); stages have time limits so the call ends inside 10 min.
#   bash ffi/cuda/device_run.sh [stages...]   (default: build bench tests sanitize profile)
#   other stages: trace (GPU timeline), sharded (2+ GPUs), sass (instructions per kernel)
#   BENCH_SECTIONS=codec,scores,attention selects what the bench stage times.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/rotorjax_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # the machines' rule: no NVLink multicast
stages=${*:-build bench tests sanitize profile}
start=$(date +%s)
step() {  # step NAME SECONDS CMD...: run with a limit, full log under $OUT, tail here
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s, at $(( $(date +%s) - start ))s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.log"
  echo "=== $name rc=$rc ($(( $(date +%s) - start ))s)"
}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
for s in $stages; do
  case $s in
    build) step build 170 env ROTORJAX_CUDA=on python3 -m pip install --no-build-isolation --no-deps -v -e . ;;
    bench) XLA_PYTHON_CLIENT_PREALLOCATE=true step bench 150 python3 benchmarks/cuda_kernels.py --json "$OUT/bench.json" \
        --sections "${BENCH_SECTIONS:-codec,scores,attention}" ;;
    # Compile-bound (one XLA program per case): 8 processes share the GPU.
    tests) XLA_FLAGS=--xla_gpu_autotune_level=0 step tests 200 python3 -m pytest -q -n 8 --maxfail=15 -p no:cacheprovider tests/test_cuda.py ;;
    sanitize)  # both tools at once: each is mostly JAX start-up and compilation under the sanitizer
      for tool in memcheck racecheck; do
        XLA_FLAGS=--xla_gpu_autotune_level=0 XLA_PYTHON_CLIENT_ALLOCATOR=platform step "$tool" 200 compute-sanitizer --tool "$tool" --error-exitcode 9 \
          --kernel-name kns=rotorjax python3 ffi/cuda/sanitize.py &
      done
      wait ;;
    trace) step trace 120 python3 benchmarks/cuda_trace.py ;;  # GPU timeline of one call per op
    sharded) step sharded 150 python3 benchmarks/cuda_sharded.py ;;  # needs 2+ GPUs (kind nvidia-h200-x2)
    # PROFILE_KERNELS narrows the kernels (a regex); the shared-memory counts tell instructions from wavefronts.
    profile) stalls=$(printf 'smsp__average_warps_issue_stalled_%s_per_issue_active.ratio,' barrier long_scoreboard short_scoreboard \
        mio_throttle lg_throttle math_pipe_throttle not_selected selected wait no_instruction imc_miss dispatch_stall)
      step profile 90 ncu --clock-control none --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
        --metrics "${stalls}smsp__inst_executed.sum,smsp__inst_executed_op_shared_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum" \
        --kernel-name regex:"${PROFILE_KERNELS:-(Encode|Decode|Scores|Attention)(Rows|Words)?Kernel}" --launch-count 5 python3 benchmarks/cuda_profile.py ;;
    sass)  # instructions per kernel (the whole SASS comes back gzipped), for counting what a change cut
      so=$(python3 -c "import rotorjax._rotorjax_cuda as m; print(m.__file__)")
      cuobjdump -sass "$so" | gzip > "$OUT/sass.gz"
      zcat "$OUT/sass.gz" | awk '/Function :/ {if (f) print n, f; f = $3; n = 0} /^ +\/\*[0-9a-f]+\*\/ / {n++}
        END {print n, f}' | c++filt | grep -E 'Rows|Scores|Attention|Merge|Rotate' | cut -c1-200 ;;
    *) echo "unknown stage $s" ;;
  esac
done
