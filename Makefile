# `make demo` and `make test` work on a fresh machine: they create .venv, install torch (the CPU
# wheel 2.13.0 when no torch is importable), build fastgan with its C++ extension, then run.
# `make demo` trains a class-conditional StyleGAN2 on scikit-learn's digits for a few CPU minutes.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
SOURCES := setup.py pyproject.toml $(wildcard csrc/cpu/*.cpp csrc/cpu/*.h)
STAMP  := $(VENV)/.fastgan-installed

.PHONY: demo test install bench clean

demo: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) -m fastgan demo --outdir demo-run

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) -m fastgan bench ops

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) $(SOURCES)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q "setuptools>=70.1" wheel ninja
	$(PY) -m pip install -q --no-build-isolation -e ".[test,demo,triton]"
	touch $(STAMP)

clean:
	rm -rf build fastgan/*.so *.egg-info
