# abcc_fast: the two commands a newcomer needs are `make demo` (main job) and `make test`.
PY ?= python
# Fast path on CPU-only machines: the CPU build of torch. A user who already has a (CUDA) torch
# keeps it: we only install these when the import fails.
TORCH_CPU ?= torch==2.13.0
TRITON ?= triton==3.6.0
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: install build test test-fast cuda-check bench demo pretrained gpu-check clean

install:
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) $(TORCH_CPU)
	@$(PY) -c "import triton" 2>/dev/null || $(PIP) $(TRITON)
	@$(PIP) "setuptools>=64" wheel "cmake>=3.24" ninja
	$(PIP) --no-build-isolation -e ".[test]"
	@$(PY) -c "import abcc_fast.ops as o; print(o.backends_report())"

# Rebuild the native extension in place (after editing csrc/).
build:
	$(PY) setup.py build_ext --inplace

# The CUDA build's compile check, for machines without a GPU: the CUDA half of the bindings
# (csrc/module.cpp, csrc/<op>/binding.cpp; syntax check against torch's and the CUDA toolkit's
# headers) and every csrc/<op>/*.cu (nvcc).
# Skipped, with a message, when nvcc is not installed.
cuda-check:
	@PYTHON=$(PY) tools/check_cuda_build.sh $(CUDA_CHECK_ARGS); rc=$$?; [ $$rc -eq 2 ] || exit $$rc

# `make install` has just compiled every .cu file (CMake's abcc_cuda_check target, or the real CUDA
# build), so the test run adds only the bindings' CUDA half.
test: install
	@$(MAKE) --no-print-directory cuda-check CUDA_CHECK_ARGS=--bindings-only
	ABCC_CUDA_CHECKED=1 $(PY) -m pytest -q tests

test-fast:
	$(PY) -m pytest -q -x -m "not slow" tests

bench: install
	@$(PIP) pysdtw tslearn pytest-benchmark
	$(PY) -m bench.run_all

demo: install
	abcc demo

# Rebuild the packaged pretrained models (abcc_fast/pretrained/opirsim, opirsim-system) and the tables of
# docs/pretrained.md: train one ABCC per split, score it on OpIRBench, write weights + model card.
# The packaged models were trained 20,000 steps per split (about 18 min each with one thread; the
# two splits in sequence here, or run one process per split with --split to use two cores).
PRETRAINED_ARGS ?= --steps 20000
pretrained: install
	$(PY) -m abcc_fast.apps.pretrained_build --split random,system --out abcc_fast/pretrained $(PRETRAINED_ARGS)

# On a GPU machine (CUDA torch, triton, cmake, ninja installed): build with CUDA, run the GPU tests
# and the GPU benchmarks within ~9 minutes; writes bench/results/*_gpu.{json,md}. Fails (exit 2)
# without a GPU; `python -m bench.gpu_check --dry-run` checks it anywhere.
gpu-check:
	$(PY) -m bench.gpu_check

clean:
	rm -rf build abcc_fast/_C*.so *.egg-info
