#!/usr/bin/env bash
# The one-shot CUDA check (issue 9), in two runs on the GPU machine while it stays warm
# (it keeps /tmp for 30 s after a run). Prepare first: bash docs/measure/gpu/prepare.sh.
#
#   run1  (carry .gpu/run1): build llama-cpp-python with CUDA from the trimmed sdist,
#         install this project without dependencies, keep the model's first part in
#         /tmp, and measure the CUDA verification curve c(1..63) of a random-weight GGUF
#         with Llama-3.2-1B's shape.                                    ~6-8 minutes
#   run2  (carry .gpu/run2): join the embedded model, measure its CUDA curve, run
#         `aded-chat bench` plain vs ADED on it (greedy, 256 tokens, the repo's prompt
#         set, median of 3), again with --steady-batch 4, and measure the host work a
#         step with trees of 32 and 63 nodes (host_per_step.py).          ~5 minutes
#   dry-run: the same steps here on the CPU (no CUDA build: the installed llama.cpp; a
#         2-layer 1B-shaped model; a short bench), plus a CMake configure of the trimmed
#         sdist, so the script is tested without a GPU.
#
# Every result is JSON under $OUT (device: curve-llama1b.json, curve-smollm2.json,
# host.json, bench.json, bench-steady4.json, env.txt). From this machine, with the device tool:
#   run(command="bash docs/measure/gpu/cuda_check.sh run1", carry=[".gpu/run1"], timeout_s=560)
#   run(command="bash docs/measure/gpu/cuda_check.sh run2", carry=[".gpu/run2"], timeout_s=420)
set -euo pipefail
cd "$(dirname "$0")/../../.."
STEP=${1:?usage: cuda_check.sh run1|run2|dry-run}
OUT=${OUT:-$(mktemp -d)}
T=${ADED_GPU_TMP:-/tmp/aded}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$T"
# On the GPU machine (2026-11-30, H200, CUDA 13, GCC 13.3, Python 3.12), a process that
# has loaded llvmlite (Numba's LLVM) and a llama-cpp-python built there segfaults in
# llama.cpp's BPE tokenizer set-up, on the GPU or the CPU, in either import order, with
# the image's Numba or PyPI's; with the system libstdc++ preloaded it runs
# (BENCHMARKS.md, session 19). This machine's build does not need it; it does no harm.
LIBSTDCXX=$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')
[ -n "$LIBSTDCXX" ] && export LD_PRELOAD="$LIBSTDCXX${LD_PRELOAD:+:$LD_PRELOAD}"

run1() {
  PY=python3
  { nvidia-smi; nvcc --version; "$PY" --version; } > "$OUT/env.txt" 2>&1 || true
  cp .gpu/run1/model.part1 "$T/model.part1"
  SDIST=$(ls .gpu/run1/llama_cpp_python-*.tar.gz)
  tar xzf "$SDIST" -C "$T"
  SRC=$(ls -d "$T"/llama_cpp_python-*/)
  CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --target "$T/site" \
      "$SRC" 2>&1 | tail -20
  # the project and the carried wheels, nothing from an index (there is none there)
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --target "$T/site" \
      .gpu/run1/whl/*.whl .
  export PYTHONPATH="$T/site"
  "$PY" docs/measure/gpu/random_gguf.py --gguf-py "$SRC/vendor/llama.cpp/gguf-py" \
      "$T/llama1b.gguf"
  "$PY" docs/measure/gpu/curve.py --model "$T/llama1b.gguf" --out "$OUT/curve-llama1b.json"
  rm -f "$T/llama1b.gguf"
}

run2() {
  PY=${PY:-python3}
  [ -d "$T/site" ] && [ -f "$T/model.part1" ] || {
    echo "run1's build is gone (the machine was not warm): run run1 again, then run2 at once"
    exit 3; }
  export PYTHONPATH="$T/site"
  cat "$T/model.part1" .gpu/run2/model.part2 > "$T/smollm2.gguf"
  echo "$(cat .gpu/run2/model.sha256)  $T/smollm2.gguf" | sha256sum -c -
  "$PY" docs/measure/gpu/curve.py --model "$T/smollm2.gguf" --out "$OUT/curve-smollm2.json"
  # ADED as it drafts on a CPU (batches as wide as each draft, one token when nothing
  # is drafted), then with every step one batch of 4 rows, which CUDA replays as one
  # captured graph (--steady-batch: engine/decode/verify.py); each result is in $OUT
  # as soon as it is written, so a run cut short keeps what it finished
  for rows in 0 4; do
    "$PY" -m aded_chat bench --model "$T/smollm2.gguf" --methods plain,aded \
        --steady-batch "$rows" --max-tokens "${BENCH_TOKENS:-256}" \
        --repeat "${BENCH_REPEAT:-3}" ${BENCH_LIMIT:+--limit "$BENCH_LIMIT"} \
        --json "$OUT/bench$([ "$rows" = 0 ] || echo "-steady$rows").json" 2>&1
  done
  "$PY" docs/measure/host_per_step.py --model "$T/smollm2.gguf" ${HOST_NODES:---nodes 32 --nodes 63} \
      --max-tokens "${HOST_TOKENS:-256}" --json "$OUT/host.json"
}

dry_run() {
  PY=.venv/bin/python
  [ -d .gpu/run1 ] || bash docs/measure/gpu/prepare.sh
  SDIST=$(ls .gpu/run1/llama_cpp_python-*.tar.gz)
  tar xzf "$SDIST" -C "$T"
  SRC=$(ls -d "$T"/llama_cpp_python-*/)
  # the trimmed sources still configure (the build itself runs on the GPU machine)
  cmake -S "$SRC" -B "$T/cmake-check" -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF > "$T/cmake.log" 2>&1 \
      || { tail -20 "$T/cmake.log"; exit 1; }
  cp .gpu/run1/model.part1 "$T/model.part1"
  "$PY" -m pip install -q --no-index --no-deps --target "$T/site" .gpu/run1/whl/*.whl
  "$PY" -m pip install -q --no-deps --target "$T/site-project" .  # (here: setuptools from PyPI)
  export PYTHONPATH="$T/site-project:$T/site"
  "$PY" docs/measure/gpu/random_gguf.py --gguf-py "$SRC/vendor/llama.cpp/gguf-py" \
      --layers 2 "$T/llama1b.gguf"
  "$PY" docs/measure/gpu/curve.py --model "$T/llama1b.gguf" --out "$OUT/curve-llama1b.json" \
      --sizes 1,2,8,9 --reps 1
  rm -f "$T/llama1b.gguf"
  HOST_NODES="--nodes 8" HOST_TOKENS=24 BENCH_TOKENS=16 BENCH_REPEAT=1 BENCH_LIMIT=2 PY=$PY run2
}

case "$STEP" in
  run1) run1 ;;
  run2) run2 ;;
  dry-run) dry_run ;;
  *) echo "usage: cuda_check.sh run1|run2|dry-run"; exit 2 ;;
esac
ls -la "$OUT"
