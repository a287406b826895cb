# abcc_fast: the two commands a newcomer needs are `make demo` (main job) and `make test`.
PY ?= python
# Fast path on CPU-only machines: the CPU build of torch. A user who already has a (CUDA) torch
# keeps it: we only install these when the import fails.
TORCH_CPU ?= torch==2.13.0
TRITON ?= triton==3.6.0
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: install build test test-fast bench demo clean

install:
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) $(TORCH_CPU)
	@$(PY) -c "import triton" 2>/dev/null || $(PIP) $(TRITON)
	@$(PIP) "setuptools>=64" wheel "cmake>=3.24" ninja
	$(PIP) --no-build-isolation -e ".[test]"
	@$(PY) -c "import abcc_fast.ops as o; print(o.backends_report())"

# Rebuild the native extension in place (after editing csrc/).
build:
	$(PY) setup.py build_ext --inplace

test: install
	$(PY) -m pytest -q tests

test-fast:
	$(PY) -m pytest -q -x -m "not slow" tests

bench: install
	@$(PIP) pysdtw tslearn pytest-benchmark
	$(PY) -m bench.run_all

demo: install
	abcc demo

clean:
	rm -rf build abcc_fast/_C*.so *.egg-info
