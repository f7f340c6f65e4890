#!/usr/bin/env bash
# Sets up a fresh machine. Safe to run again.
#
#   bash scripts/setup.sh         espeak-ng (apt) + .venv: the CPU build of torch 2.13.0 and
#                                 rhythmflow with the chinese and dev extras
#   WITH_MULAN=1 bash scripts/setup.sh
#                                 .venv with MuQ-MuLan instead (style from a text prompt or
#                                 reference audio): see mulan_stack below
#   bash scripts/setup.sh test    .venv as above, plus .venv-mulan: the rhythmflow[mulan]
#                                 install the tests run the real MuQ-MuLan path in, plus
#                                 chromium (apt) and playwright for the page's browser test,
#                                 redis-server (apt) for the serve scale-out test
#
# MuQ-MuLan (package muq 0.1.0) imports torchaudio, whose newest release (2.11) pins torch 2.11,
# and from PyPI that is a CUDA build (several GB, runs on CPU too); x_clip (a muq dependency)
# pulls torchvision, pinned here to the release that matches torch 2.11.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-main}
case "$MODE" in main|test) ;; *) echo "usage: $0 [main|test]" >&2; exit 2 ;; esac

if ! command -v espeak-ng >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi
PY=${PYTHON:-python3}

new_venv() {  # new_venv DIR
  [ -x "$1/bin/python" ] || "$PY" -m venv "$1"
  "$1/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
}

mulan_stack() {  # mulan_stack DIR EXTRAS [more packages]
  local dir=$1 extras=$2; shift 2
  new_venv "$dir"
  "$dir/bin/python" -m pip install -q torch==2.11.0 torchaudio==2.11.0 torchvision==0.26.0 \
    -e ".[$extras]" "$@"
}

if [ "${WITH_MULAN:-0}" = 1 ]; then
  mulan_stack .venv "chinese,dev,mulan,serve"
else
  new_venv .venv
  # torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
  .venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
  .venv/bin/python -m pip install -q -e ".[chinese,dev,mp3,serve]"
fi
if [ "$MODE" = test ]; then
  # the serve scale-out test starts a throw-away redis-server (Debian package)
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq redis-server >/dev/null
  fi
  # the page's browser test: Playwright drives Debian's chromium (no browser download)
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium >/dev/null
  fi
  .venv/bin/python -m pip install -q -e ".[serve-test]"
  # sentencepiece + protobuf build the tiny XLM-R tokenizer the MuQ-MuLan tests train
  mulan_stack .venv-mulan "dev,mulan" sentencepiece protobuf
fi
