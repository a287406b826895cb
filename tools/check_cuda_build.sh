#!/usr/bin/env bash
# Compile-checks the CUDA half of the native extension on a machine without a GPU (and with a CPU
# build of torch), so that a CUDA build cannot break unnoticed:
#   1. the bindings, csrc/module.cpp and every csrc/<op>/binding.cpp, with -DABCC_WITH_CUDA=1
#      -fsyntax-only against torch's headers and the CUDA toolkit's (this is what a CUDA torch
#      compiles; the CPU build never sees that half);
#   2. every csrc/<op>/*.cu file with nvcc -c for sm_90 (objects thrown away).
# Exit status 0: all compiled. 2: skipped (no nvcc or no CUDA headers), with a message. Else: failed.
# Usage: tools/check_cuda_build.sh [--bindings-only]   (step 1 only)
# Environment: PYTHON (the interpreter whose torch is used; default python), CXX, CUDA_HOME,
# ABCC_CHECK_ARCH=NN (the sm_NN of step 2; default 90).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
ONLY_BINDINGS=0
if [[ "${1:-}" == "--bindings-only" ]]; then ONLY_BINDINGS=1; elif [[ -n "${1:-}" ]]; then
  echo "usage: $0 [--bindings-only]" >&2; exit 64
fi
ARCH=${ABCC_CHECK_ARCH:-90}

NVCC=$(command -v nvcc || true)
if [[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]]; then NVCC=/usr/local/cuda/bin/nvcc; fi
if [[ -z "$NVCC" ]]; then
  echo "check_cuda_build: SKIPPED: nvcc not found (install the CUDA toolkit to compile-check the CUDA code)"
  exit 2
fi
CUDA_INC=""
for root in "${CUDA_HOME:-}" "${CUDA_PATH:-}" "$(dirname "$(readlink -f "$NVCC")")/.." /usr/local/cuda; do
  if [[ -n "$root" && -f "$root/include/cuda_runtime.h" ]]; then CUDA_INC=$(cd "$root/include" && pwd); break; fi
done
if [[ -z "$CUDA_INC" ]]; then
  echo "check_cuda_build: SKIPPED: nvcc found but not the CUDA headers (cuda_runtime.h); set CUDA_HOME"
  exit 2
fi
CXX=${CXX:-c++}

mapfile -t INFO < <("$PY" - <<'PYEOF'
import sysconfig
import torch
import torch.utils.cpp_extension as ext
try:
    inc = ext.include_paths(device_type="cpu")
except TypeError:  # torch < 2.6
    inc = ext.include_paths()
print("|".join(inc))
print(sysconfig.get_paths()["include"])
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))
PYEOF
)
IFS='|' read -r -a TORCH_INC <<< "${INFO[0]}"
PY_INC=${INFO[1]}
ABI=${INFO[2]}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# A CPU wheel of torch lacks this generated header of its CUDA half; an empty stand-in is enough
# for a syntax check (a CUDA wheel ships the real one, found first when present).
mkdir -p "$TMP/stub/c10/cuda/impl"
: > "$TMP/stub/c10/cuda/impl/cuda_cmake_macros.h"

INC=()
for d in "${TORCH_INC[@]}"; do INC+=(-I "$d"); done
INC+=(-I "$PY_INC" -I csrc -I "$CUDA_INC" -I "$TMP/stub")

status=0
for src in csrc/module.cpp csrc/*/binding.cpp; do
  echo "check_cuda_build: $src with ABCC_WITH_CUDA=1 ($CXX -fsyntax-only)"
  if ! "$CXX" -std=c++17 -fsyntax-only -Wno-c++20-extensions -DABCC_WITH_CUDA=1 -D_GLIBCXX_USE_CXX11_ABI="$ABI" \
       -DTORCH_EXTENSION_NAME=_C -DTORCH_API_INCLUDE_EXTENSION_H "${INC[@]}" "$src"; then
    echo "check_cuda_build: FAILED: $src does not compile with ABCC_WITH_CUDA=1"
    status=1
  fi
done
CU_FILES=(csrc/*/*.cu)
[[ $ONLY_BINDINGS -eq 1 ]] && CU_FILES=()
for cu in "${CU_FILES[@]}"; do
  echo "check_cuda_build: $cu (nvcc -c, sm_$ARCH)"
  if ! "$NVCC" -std=c++17 -c --expt-relaxed-constexpr -arch=sm_"$ARCH" -I csrc "$cu" -o "$TMP/$(basename "$cu").o"; then
    echo "check_cuda_build: FAILED: $cu"
    status=1
  fi
done
[[ $status -eq 0 ]] && echo "check_cuda_build: OK"
exit $status
