#!/usr/bin/env bash
# Build llama.cpp's llama-server from the source vendored in the installed
# llama-cpp-python, so the bench's llama-server peers run the same llama.cpp with the
# same kernels as aded-chat. Prints the binary's path; a second run finds it built.
#
#   bash docs/measure/build_llama_server.sh [OUT_DIR]
#   aded-chat bench --llama-server "$(bash docs/measure/build_llama_server.sh)" \
#       --methods plain,aded,llama-server:ngram-mod,llama-server:ngram-map-k
#
# OUT_DIR defaults to <user cache>/aded-chat/llama-server-<version>. Needs cmake and a C++
# compiler; about 4 minutes on two cores. PYTHON selects the interpreter (default python3).
set -euo pipefail
PY=${PYTHON:-python3}
VER=$("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)')
OUT=${1:-$("$PY" -c 'import platformdirs; print(platformdirs.user_cache_dir("aded-chat"))')/llama-server-$VER}
BIN=$OUT/bin/llama-server
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VER" -d "$WORK" >&2
tar xzf "$WORK/llama_cpp_python-$VER.tar.gz" -C "$WORK"
cmake -S "$WORK/llama_cpp_python-$VER/vendor/llama.cpp" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$WORK/build" -j "$(nproc)" --target llama-server >&2
mkdir -p "$OUT/bin"
cp "$WORK/build/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
echo "$BIN"
