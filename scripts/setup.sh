#!/usr/bin/env bash
# Sets up a fresh machine. Safe to run again, in any order of modes.
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
#   bash scripts/setup.sh verify  only check the existing .venv (and .venv-mulan): exit 1 with
#                                 what is broken
#
# MuQ-MuLan (package muq 0.1.0) imports torchaudio, whose newest release (2.11) pins torch 2.11,
# and from PyPI that is a CUDA build (several GB, runs on CPU too); x_clip (a muq dependency)
# pulls torchvision, pinned here to the release that matches torch 2.11.
#
# .venv has one "flavour", written to .venv/.rhythmflow-flavour: "cpu" (torch 2.13 CPU) or
# "mulan" (torch 2.11 + torchaudio + muq). Installing one flavour over the other left a torch
# that torchaudio/muq could not load while setup still exited 0, so: without WITH_MULAN, the
# existing flavour is kept (`setup.sh test` after `WITH_MULAN=1 setup.sh` does not undo it); an
# explicit WITH_MULAN=0/1 that differs from it rebuilds .venv from scratch, saying so. Every run
# ends by importing what it installed (torch, torchaudio where expected, muq, rhythmflow) and
# exits 1, naming the problem, when anything does not load.
# SETUP_PLAN_ONLY=1 prints the decision and exits (used by the tests; installs nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-main}
case "$MODE" in main|test|verify) ;; *) echo "usage: $0 [main|test|verify]" >&2; exit 2 ;; esac
VENV=${VENV:-.venv}
MULAN_VENV=${MULAN_VENV:-.venv-mulan}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
MULAN_TORCH=2.11.0
PY=${PYTHON:-python3}

flavour_of() {  # flavour_of DIR: the recorded flavour, else probed, else "none"
  if [ -f "$1/.rhythmflow-flavour" ]; then cat "$1/.rhythmflow-flavour"
  elif [ ! -x "$1/bin/python" ]; then echo none
  elif "$1/bin/python" -c "import importlib.metadata as m; m.version('muq')" >/dev/null 2>&1
  then echo mulan  # installed (even if a later torch broke its import): an unmarked mulan venv
  else echo cpu; fi
}

verify_venv() {  # verify_venv DIR FLAVOUR: import what the flavour promises; exit 1 if broken
  "$1/bin/python" - "$2" "$TORCH_VERSION" "$MULAN_TORCH" <<'PYEOF'
import sys

flavour, want_cpu, want_mulan = sys.argv[1:4]
want = want_mulan if flavour == "mulan" else want_cpu
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
    problems.append(f"torch is {torch.__version__}, the {flavour} install needs {want}")
try:
    import torchaudio
except ModuleNotFoundError:
    if flavour == "mulan":
        problems.append("torchaudio is not installed (MuQ-MuLan needs it)")
except Exception as exc:
    problems.append(f"import torchaudio failed ({type(exc).__name__}: {str(exc)[:160]})")
else:
    found["torchaudio"] = torchaudio.__version__
    pair = [v.split("+")[0].rsplit(".", 1)[0] for v in (torchaudio.__version__,
                                                       found.get("torch", "?"))]
    if torch is not None and pair[0] != pair[1]:
        problems.append(f"torchaudio {torchaudio.__version__} was built for torch {pair[0]}, "
                        f"not {torch.__version__}")
for name in ["rhythmflow", "soundfile", "phonemizer"] + (["muq"] if flavour == "mulan" else []):
    load(name)
where = sys.prefix
if problems:
    print(f"setup FAILED: {where} ({flavour} install) is broken:", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    print(f"fix: delete {where} and run scripts/setup.sh again", file=sys.stderr)
    sys.exit(1)
print(f"{where}: {flavour} install verified (" + ", ".join(f"{k} {v}" for k, v in found.items())
      + ")")
PYEOF
}

if [ "$MODE" = verify ]; then
  status=0
  for dir in "$VENV" "$MULAN_VENV"; do
    f=$(flavour_of "$dir")
    if [ "$f" = none ]; then
      [ "$dir" = "$VENV" ] && { echo "setup FAILED: $dir does not exist" >&2; status=1; }
      continue
    fi
    verify_venv "$dir" "$f" || status=1
  done
  exit $status
fi

have=$(flavour_of "$VENV")
if [ -z "${WITH_MULAN:-}" ]; then  # not asked: keep what is there (a fresh machine: cpu)
  if [ "$have" = mulan ]; then want=mulan; else want=cpu; fi
elif [ "$WITH_MULAN" = 1 ]; then want=mulan; else want=cpu; fi
action=keep
if [ "$have" = none ]; then action=create
elif [ "$have" != "$want" ]; then action=rebuild; fi
if [ "${SETUP_PLAN_ONLY:-0}" = 1 ]; then
  echo "plan: $VENV holds $have, $want wanted: $action"
  exit 0
fi

if ! command -v espeak-ng >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi

new_venv() {  # new_venv DIR
  [ -x "$1/bin/python" ] || "$PY" -m venv "$1"
  "$1/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
}

mulan_stack() {  # mulan_stack DIR EXTRAS [more packages]
  local dir=$1 extras=$2; shift 2
  new_venv "$dir"
  "$dir/bin/python" -m pip install -q torch==$MULAN_TORCH torchaudio==2.11.0 \
    torchvision==0.26.0 -e ".[$extras]" "$@"
  echo mulan > "$dir/.rhythmflow-flavour"
}

if [ "$action" = rebuild ]; then
  echo "setup: $VENV holds the $have install but the $want install was asked for" \
       "(WITH_MULAN=${WITH_MULAN}); rebuilding $VENV from scratch" >&2
  rm -rf "$VENV"
elif [ "$want" = mulan ] && [ "$MODE" = test ] && [ -z "${WITH_MULAN:-}" ]; then
  echo "setup: note: $VENV keeps its MuQ-MuLan install (torch $MULAN_TORCH); for CI's CPU" \
       "install run WITH_MULAN=0 bash scripts/setup.sh test (rebuilds $VENV)" >&2
fi
if [ "$want" = mulan ]; then
  mulan_stack "$VENV" "chinese,dev,mulan,serve"
else
  new_venv "$VENV"
  # torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION"
  "$VENV/bin/python" -m pip install -q -e ".[chinese,dev,mp3,serve]"
  echo cpu > "$VENV/.rhythmflow-flavour"
fi
verify_venv "$VENV" "$want"
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
  "$VENV/bin/python" -m pip install -q -e ".[serve-test]"
  # sentencepiece + protobuf build the tiny XLM-R tokenizer the MuQ-MuLan tests train
  mulan_stack "$MULAN_VENV" "dev,mulan" sentencepiece protobuf
  verify_venv "$MULAN_VENV" mulan
fi
