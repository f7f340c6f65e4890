#!/usr/bin/env bash
# Sets up a fresh machine: system packages (espeak-ng), a virtual environment in .venv with the
# CPU build of torch and rhythmflow with the chinese and dev extras. Safe to run again.
#
# WITH_MULAN=1 also installs MuQ-MuLan (style from a text prompt or reference audio). muq needs
# torchaudio, whose newest release (2.11) pins torch 2.11 — from PyPI that is a CUDA build of
# several GB — so that mode installs torch 2.11.0 + torchaudio 2.11.0 instead of torch 2.13.0.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v espeak-ng >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
if [ "${WITH_MULAN:-0}" = 1 ]; then
  TORCH_VERSION=${TORCH_VERSION:-2.11.0}
  .venv/bin/python -m pip install -q "torch==$TORCH_VERSION" "torchaudio==$TORCH_VERSION"
  .venv/bin/python -m pip install -q -e ".[chinese,dev,mulan]" "torch==$TORCH_VERSION"
else
  .venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
  .venv/bin/python -m pip install -q -e ".[chinese,dev]"
fi
