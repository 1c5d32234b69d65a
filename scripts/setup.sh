#!/usr/bin/env bash
# Creates .venv with fastbp (editable) and its test and benchmark extras.
# torch goes in first and pinned: the machines this runs on hold a local CPU wheel of
# torch 2.13.0, and any looser spec would download a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
# pip's own exit status decides; only the local index's "Location ... ignored" noise is dropped.
pip_install() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location" >&2); }
pip_install torch==2.13.0
pip_install -e ".[test,bench]"
.venv/bin/python -c "import fastbp, fastbp.kernels, torch; print('fastbp', fastbp.__version__, '| torch', torch.__version__)"
