#!/usr/bin/env bash
# The test command: builds .venv/ at the repo root when missing (or when the pinned requirements changed),
# reuses it otherwise, then runs the whole suite on CPU. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.requirements.sha256"
WANT=$(cat tests/requirements.txt tests/requirements-nodeps.txt | sha256sum | cut -d' ' -f1)

if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "== setting up $VENV (pinned test requirements)"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch first, pinned: with it in place nothing else may pull a CUDA build
    "$VENV/bin/python" -m pip install --quiet "$(grep '^torch==' tests/requirements.txt)"
    "$VENV/bin/python" -m pip install --quiet -r tests/requirements.txt
    "$VENV/bin/python" -m pip install --quiet --no-deps -r tests/requirements-nodeps.txt
    "$VENV/bin/python" -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.startswith('2.13.0') else 'torch was replaced: ' + v)"
    echo "$WANT" > "$STAMP"
fi

exec "$VENV/bin/python" -m pytest "$@"
