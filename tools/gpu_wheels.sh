#!/usr/bin/env bash
# The packages the GPU check needs beyond what a CUDA machine with PyTorch has (Hydra, OmegaConf and
# its parser, simplejpeg; and a setuptools that builds an editable install by itself), as wheels in .whl/ for that machine's Python (GPU_PYTHON_VERSION, 3.12 by
# default): for a machine that cannot reach a package registry. Versions are this .venv's.
# Run here, with a registry in reach; then carry .whl to the GPU machine (docs/development.md).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PY:-.venv/bin/python}
target=${GPU_PYTHON_VERSION:-3.12}
version() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .whl && mkdir .whl
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$target" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "hydra-core==$(version hydra-core)" "omegaconf==$(version omegaconf)" "simplejpeg==$(version simplejpeg)" \
    "setuptools==$(version setuptools)"
# Published as a source archive only: a pure-Python wheel built here serves any Python 3.
"$py" -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==$(version antlr4-python3-runtime)"
ls .whl
