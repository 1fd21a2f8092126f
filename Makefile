PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pip picks the newest torch it may use; on machines with a local cap this is a local file.
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) tools/benchmark.py all --compiled --rounds 5 --root ../shared/data/imagenet-samples --json bench.json

clean:
	rm -rf $(VENV) build *.egg-info outputs multirun demo_data bench.json
