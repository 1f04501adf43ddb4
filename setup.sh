#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with the CPU build of torch, the project
# and its dev tools, the offline `dvc plots` template, and (when ../shared is beside this
# checkout) the offline Hub mirror and NLTK data wired into .venv/bin/activate.
#   bash setup.sh && . .venv/bin/activate
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned: this machine's pip takes the CPU wheel on disk for 2.13.0, while an open
# `torch` requirement would pull a multi-GB CUDA build. pyproject.toml keeps a range.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
python -m sentiment.report.plots_template

shared="$(cd .. && pwd)/shared"
marker="# sentiment-pipeline: offline mirror"
if [ -d "$shared/hub" ] && ! grep -q "$marker" .venv/bin/activate; then
  {
    echo "$marker"
    echo "export HUB_MIRROR=\"$shared/hub\""
    echo "export NLTK_DATA=\"$shared/nltk_data\""
    echo "export HF_HUB_OFFLINE=1"
  } >> .venv/bin/activate
fi
echo "set-up done: run '. .venv/bin/activate', then 'dvc repro' or 'pytest'"
