#!/usr/bin/env bash
# Lay out here what the CUDA check carries to the GPU machine, in two runs of at most
# 64 MiB each (the machine has no network, CUDA's nvcc, cmake, ninja, scikit-build-core,
# numpy, numba and jinja2, but not llama-cpp-python, platformdirs or diskcache):
#   .gpu/run1: the llama-cpp-python sdist trimmed to what a build needs (76 MB -> ~12 MB:
#              no .git pack, vocabulary test models, docs, tests, web UI), two wheels, and
#              the first part of the embedded model;
#   .gpu/run2: the rest of the embedded model (98 MB cannot travel in one run).
# Usage: bash docs/measure/gpu/prepare.sh   (from the repository root, with .venv built)
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PY:-.venv/bin/python}
VERSION=$("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)')
MODEL=$("$PY" -c 'from aded_chat.engine.llama.models import embedded_model_path; print(embedded_model_path())')
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/run1/whl .gpu/run2 .gpu/src
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

"$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$W"
tar xzf "$W/llama_cpp_python-$VERSION.tar.gz" -C "$W"
SRC="$W/llama_cpp_python-$VERSION"
V="$SRC/vendor/llama.cpp"
rm -rf "$SRC/.git" "$SRC/docs" "$SRC/tests" "$SRC/examples" "$SRC/docker" \
       "$V/.git" "$V/models" "$V/docs" "$V/tests" "$V/benches" "$V/media" "$V/.github" \
       "$V/examples" "$V/tools/ui" "$V/tools/server/public"* "$V/conversion" "$V/scripts"
# CMake still lists examples/ and tests/ (off here, but add_subdirectory needs them)
mkdir -p "$V/examples" "$V/tests" && touch "$V/examples/CMakeLists.txt" "$V/tests/CMakeLists.txt"
tar czf ".gpu/run1/llama_cpp_python-$VERSION.tar.gz" -C "$W" "llama_cpp_python-$VERSION"
tar czf .gpu/src/gguf-py.tar.gz -C "$V" gguf-py  # the dry run writes a model with it

for pkg in platformdirs diskcache; do
  ver=$("$PY" -c "import importlib.metadata as m; print(m.version('$pkg'))")
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
      --platform any -d .gpu/run1/whl "$pkg==$ver"
done

SPLIT=$((40 * 1024 * 1024))
head -c "$SPLIT" "$MODEL" > .gpu/run1/model.part1
tail -c +"$((SPLIT + 1))" "$MODEL" > .gpu/run2/model.part2
sha256sum "$MODEL" | cut -d' ' -f1 > .gpu/run2/model.sha256
du -sh .gpu/run1 .gpu/run2
