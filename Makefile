PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pip picks the newest torch it may use; on machines with a local cap this is a local file.
STAMP := $(VENV)/.installed

.PHONY: install demo lint docs test test-slow test-slurm fuzz mutate bench gpu-check gpu-wheels clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# setup.py builds the optional C extension (the training crop's region decoder): rebuilt when it changes.
$(STAMP): $(VENV)/bin/python pyproject.toml setup.py $(wildcard fishnet_train/data/decoding/_jpeg_*.[ch])
	$(PY) -m pip install -q -e ".[dev,docs]"
	touch $(STAMP)

# Every time: one line on whether the region decoder (the optional C extension) was built, and if not, why.
install: $(STAMP)
	@$(PY) -m fishnet_train.data.decoding.status

demo: install
	$(PY) tools/demo.py

# Static checks (settings in setup.cfg): flake8, then mypy on fishnet_train/ (about 25 s).
lint: $(STAMP)
	$(PY) -m flake8 fishnet_train hubconf.py setup.py tools tests
	$(PY) -m mypy

# The documentation site (mkdocs.yml, docs/) into site/, strict: a broken link or anchor, or a page
# missing from the nav, fails. The configuration page is generated first from the schema.
docs: $(STAMP)
	$(PY) tools/config_reference.py
	$(PY) -m mkdocs build --strict --quiet

# The suite without the slow tests (multi-process runs, compiling, the wheel install): under 5 minutes.
test: install
	$(PY) -m pytest -q -m "not slow and not slurm" tests

# The slow tests alone (about 20 minutes on 2 cores); CI runs them after make test.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow and not slurm" tests

# Jobs on a real one-node SLURM that the tests start and stop (tests/cluster/slurm.py): needs root
# and Debian's slurm-wlm and munge (.ci/run installs them); skipped with the reason otherwise.
test-slurm: $(STAMP)
	$(PY) -m pytest -q -m slurm tests

# The config fuzzer at 20x its CI examples (1,600 train and 1,000 eval configs, about 15 minutes).
fuzz: $(STAMP)
	FISHNET_FUZZ_SCALE=20 $(PY) -m pytest -q tests/test_config_fuzz.py --hypothesis-show-statistics

# Mutation testing (tools/mutate.py): each module against its own tests, a score and the survivors each;
# MODULE=training/checkpoint runs one (python tools/mutate.py --list names them), DIFF=1 shows each
# survivor's change. Minutes per module (docs/development.md, Mutation testing).
MODULE ?=
mutate: $(STAMP)
	$(PY) tools/mutate.py $(if $(DIFF),--diff) $(MODULE)

# The GPU check (tools/gpu_check.py: the gpu tests and the GPU figures, about 8 minutes) into $(OUT), on
# a machine with a CUDA GPU. Needs no .venv: on a machine whose python3 has PyTorch it installs the
# wheels in .whl/ (make gpu-wheels, run where a package registry is in reach) and the project.
OUT ?= gpu_check_out
gpu-check:
	bash tools/gpu_check.sh $(OUT)

gpu-wheels: $(STAMP)
	bash tools/gpu_wheels.sh

# BENCH_ROOT=<ImageNet data.root> (class folders or shards) for the data figures on real JPEGs; without it,
# synthetic JPEGs of ImageNet's sizes, labelled so.
BENCH_ROOT ?=
bench: $(STAMP)
	$(PY) tools/benchmarks/benchmark.py all --compiled --rounds 5 $(if $(BENCH_ROOT),--root $(BENCH_ROOT)) --json bench.json

clean:
	rm -rf $(VENV) build *.egg-info outputs multirun demo_data bench.json site .whl gpu_check_out
