#!/usr/bin/env bash
# The GPU check on a CUDA machine whose python3 has PyTorch but not this project (the device
# machines lent to this project): install the carried wheels (.whl/, from tools/gpu_wheels.sh) and
# the project itself (editable, no dependencies, nothing fetched) into that python, then run
# tools/gpu_check.py. Where the project is already importable (a .venv), it only runs the check.
#   bash tools/gpu_check.sh OUT [gpu_check.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: tools/gpu_check.sh OUT [options]}
# A .venv here (make install) has everything; a GPU machine's own python3 gets the wheels.
if [ -x .venv/bin/python ]; then default_python=.venv/bin/python; else default_python=python3; fi
python=${GPU_PYTHON:-$default_python}
if ! "$python" -c "import fishnet_train.conf, hydra, simplejpeg" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$python" -m pip install -q --no-index --no-deps .whl/*.whl
    fi
    "$python" -m pip install -q --no-index --no-deps --no-build-isolation -e .
fi
export PYTHONUNBUFFERED=1
exec "$python" tools/gpu_check.py "$out" "${@:2}"
