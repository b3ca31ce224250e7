#!/usr/bin/env bash
# Create .venv with flashmd and its dev tools. torch is installed first, pinned to the local CPU
# wheel, so that the unpinned torch>=2.2 requirement does not pull several GB of CUDA packages.
# On a GPU machine install the torch build you need first, then run this script.
# Arguments name more extras: `bash scripts/setup.sh notebooks` adds JupyterLab
# (then: jupyter lab notebooks/), `bash scripts/setup.sh docs` what scripts/docs.sh needs.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0" || python -m pip install -q torch
extras="dev,fast"
for extra in "$@"; do
    extras="$extras,$extra"
done
python -m pip install -q -e ".[$extras]"
