#!/usr/bin/env bash
# Sets up a fresh machine. Safe to run again.
#
#   bash scripts/setup.sh         .venv: torch (one, pinned) and rhythmflow with the mulan (text
#                                 and audio style prompts), chinese, mp3, serve and dev extras.
#                                 pip only: no system package (English G2P loads espeak-ng from a
#                                 wheel, see rhythmflow.lyrics.g2p.espeak_library)
#   bash scripts/setup.sh test    the same, plus what only the tests need: chromium and
#                                 redis-server (apt) for the browser and scale-out tests,
#                                 playwright, and .venv-mulan: a test-only environment with the
#                                 real `muq` package, where one test compares rhythmflow's own
#                                 MuQ-MuLan with it (muq imports torchaudio, which pins torch 2.11)
#   bash scripts/setup.sh verify  only check the existing .venv: exit 1 with what is broken
#
# torch: TORCH_VERSION (default 2.13.0) from the package index pip uses. On Linux x86_64 PyPI's
# default torch is the CUDA build (several GB; it runs on a CPU too); for the CPU-only build set
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (see the README).
# Every run ends by importing what it installed and exits 1, naming the problem, when anything
# does not load.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-main}
case "$MODE" in main|test|verify) ;; *) echo "usage: $0 [main|test|verify]" >&2; exit 2 ;; esac
VENV=${VENV:-.venv}
MULAN_VENV=${MULAN_VENV:-.venv-mulan}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
PY=${PYTHON:-python3}

verify_venv() {  # verify_venv DIR: import what the install promises; exit 1 if broken
  "$1/bin/python" - "$TORCH_VERSION" <<'PYEOF'
import sys

want = sys.argv[1]
problems, found = [], {}


def load(name):
    try:
        module = __import__(name)
    except Exception as exc:  # ImportError, OSError (undefined symbol), RuntimeError...
        problems.append(f"import {name} failed ({type(exc).__name__}: {str(exc)[:160]})")
        return None
    found[name] = getattr(module, "__version__", "?")
    return module


torch = load("torch")
if torch is not None and torch.__version__.split("+")[0] != want:
    problems.append(f"torch is {torch.__version__}, this install needs {want}")
for name in ["rhythmflow", "soundfile", "phonemizer", "transformers", "tokenizers"]:
    load(name)
if "rhythmflow" in found:
    try:  # English lyrics: an espeak-ng library (system or wheel) must load
        from rhythmflow.lyrics.g2p.espeak_library import find_espeak

        found["espeak-ng"] = str(find_espeak())[:80]
    except Exception as exc:
        problems.append(f"no espeak-ng for English lyrics ({type(exc).__name__}: "
                        f"{str(exc)[:160]})")
where = sys.prefix
if problems:
    print(f"setup FAILED: {where} is broken:", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    print(f"fix: delete {where} and run scripts/setup.sh again", file=sys.stderr)
    sys.exit(1)
print(f"{where}: install verified (" + ", ".join(f"{k} {v}" for k, v in found.items()) + ")")
PYEOF
}

if [ "$MODE" = verify ]; then
  [ -x "$VENV/bin/python" ] || { echo "setup FAILED: $VENV does not exist" >&2; exit 1; }
  verify_venv "$VENV"
  exit $?
fi

new_venv() {  # new_venv DIR
  [ -x "$1/bin/python" ] || "$PY" -m venv "$1"
  "$1/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
}

apt_install() {  # apt_install COMMAND PACKAGE: install PACKAGE unless COMMAND exists
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "$2" >/dev/null
}

new_venv "$VENV"
# torch first and pinned: rhythmflow's own requirement (torch>=2.4) then keeps it
torch_args=("torch==$TORCH_VERSION")
[ -n "${TORCH_INDEX_URL:-}" ] && torch_args+=(--index-url "$TORCH_INDEX_URL")
"$VENV/bin/python" -m pip install -q "${torch_args[@]}"
"$VENV/bin/python" -m pip install -q -e ".[mulan,chinese,dev,mp3,serve]"
verify_venv "$VENV"
if [ "$MODE" = test ]; then
  apt_install redis-server redis-server  # the serve scale-out tests start a throw-away one
  apt_install chromium chromium          # the page's browser test (no browser download)
  "$VENV/bin/python" -m pip install -q -e ".[serve-test]"
  # test-only: the real muq (and the torchaudio 2.11 / transformers 4 it needs) for the one
  # comparison of rhythmflow's own MuQ-MuLan with it (tests/mulan, run by test_mulan_env.py)
  new_venv "$MULAN_VENV"
  "$MULAN_VENV/bin/python" -m pip install -q torch==2.11.0 torchaudio==2.11.0 \
    torchvision==0.26.0 "muq==0.1.0" "transformers>=4.40,<5" sentencepiece protobuf \
    -e ".[dev]"
  "$MULAN_VENV/bin/python" -c "import muq, torchaudio, transformers, rhythmflow" \
    || { echo "setup FAILED: $MULAN_VENV cannot import muq" >&2; exit 1; }
fi
