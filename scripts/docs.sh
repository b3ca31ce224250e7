#!/usr/bin/env bash
# Build the documentation site into docs/_build/html (open docs/_build/html/index.html).
# Warnings are errors. The notebooks are executed (FLASHMD_DOCS_EXECUTE=cache: once, then only
# when one changes, not when the library does; outputs cached in docs/_build/.jupyter_cache; a
# fresh checkout executes all four, about 3 minutes on a busy 2-core CPU); FLASHMD_DOCS_EXECUTE=off
# renders them without outputs, force re-executes them. Needs the docs extra:
#   pip install -e '.[docs]'
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
    . .venv/bin/activate
fi
python -c "import sphinx, pydata_sphinx_theme, myst_nb" 2>/dev/null || {
    echo "scripts/docs.sh: the docs extra is missing: pip install -e '.[docs]'" >&2
    exit 2
}
# one torch thread per notebook kernel: more only wait on each other on a small, busy machine
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export FLASHMD_DOCS_EXECUTE="${FLASHMD_DOCS_EXECUTE:-cache}"
start=$SECONDS
# -E: read every page again, as the CLI and API pages come from Python code Sphinx does not track
sphinx-build -E -W --keep-going -b html docs docs/_build/html "$@"
echo "scripts/docs.sh: docs/_build/html/index.html in $((SECONDS - start)) s (notebooks: $FLASHMD_DOCS_EXECUTE)"
