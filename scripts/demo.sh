#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the main job: train the seed-004 network
# and compare its time per epoch with numpy and torch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m fastbp demo "$@"
