#!/usr/bin/env bash
# The newest stack: the newest TensorFlow, tf-keras, tensorflow-model-optimization,
# tflite-micro, numpy ... that setup.cfg's ranges admit, installed into a venv of
# its own beside the repository (never .venv, which is CI's pinned stack from
# constraints/ci.txt), then the fast subset of the suite on it.
#
#   scripts/test-latest.sh [VERSION ...]    e.g. scripts/test-latest.sh 3.11 3.12 3.13
#
# VERSION is a Python version (default 3.12), found as pythonVERSION on the PATH or
# under pyenv ($PYENV_ROOT/versions/VERSION*), or a path to an interpreter.  The
# venv is ../venv-latest-pyVERSION (VENV=... names another one for a single version);
# it is upgraded in place on every run ("newest" moves).  tensorflow-io is installed
# where it has wheels (Python < 3.13), so the run also covers its ops failing to load
# on TF >= 2.18 and flac/ogg falling back to soundfile.  Record what it printed in the
# README's "Tested stacks".
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

# the fast subset: units, audio (both decoders), features, quantizers, the quantize
# API and PTQ, and the converter's TFLM parity per layer family (about 6 minutes on 2 cores)
FAST_TESTS=(
  tests/test_audio.py tests/test_metrics.py tests/test_features.py tests/test_kmeans1d.py
  tests/test_quantizers.py tests/test_quant_api.py tests/test_ptq.py tests/test_layering.py
  "tests/test_converters.py::test_every_supported_class_converts_and_matches_keras_under_tflm"
  "tests/test_converters.py::test_ptq_strip_convert_round_trip"
)

find_python() {
  local want=$1 cand
  if [ -x "$want" ]; then echo "$want"; return; fi
  for cand in "python$want" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want"*/bin/python; do
    if "$cand" -c 'import venv' >/dev/null 2>&1; then command -v "$cand"; return; fi
  done
  echo "test-latest: no Python $want here (neither python$want on the PATH nor pyenv's versions/$want*)" >&2
  return 1
}

run_one() {
  local python venv version
  python=$(find_python "$1")
  version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  venv=${VENV:-$(dirname "$repo")/venv-latest-py$version}
  echo "[test-latest] Python $version ($python) -> $venv"
  if [ ! -f "$venv/pyvenv.cfg" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then  # none yet, or broken
    nice -n 10 "$python" -m venv --clear "$venv"
  fi
  # eager: every dependency at the newest release the ranges admit, not what the venv had
  if ! { nice -n 10 "$venv/bin/pip" install --upgrade pip &&
         nice -n 10 "$venv/bin/pip" install --upgrade --upgrade-strategy eager -e "$repo[test,tfio]"; \
       } > "$venv/install.log" 2>&1; then
    tail -n 30 "$venv/install.log"
    echo "[test-latest] installing into $venv failed (all of pip's output: $venv/install.log)" >&2
    return 1
  fi
  export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2
  "$venv/bin/python" - <<'EOF' 2> >(grep -v "^I0000\|^WARNING: All log messages" >&2)
import importlib.metadata as m, subprocess, sys

names = ["tensorflow", "tf-keras", "tensorflow-model-optimization", "tflite-micro", "numpy", "scipy",
         "soundfile", "tensorflow-io"]
versions = {}
for name in names:
    try:
        versions[name] = m.version(name)
    except m.PackageNotFoundError:
        versions[name] = "-"
print("[test-latest] " + ", ".join(f"{k} {v}" for k, v in versions.items()))
out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "tensorflow"],
                     capture_output=True, text=True).stdout
newest = out.split("(", 1)[1].split(")", 1)[0] if "(" in out else None
if newest is None:
    print("[test-latest] the registry did not say which tensorflow is the newest: not checked")
elif newest != versions["tensorflow"]:
    sys.exit(f"[test-latest] pip kept tensorflow {versions['tensorflow']}, the newest is {newest}: "
             "setup.cfg's ranges hold it back")
else:
    print(f"[test-latest] tensorflow {newest} is the newest release")
from tfadvq.audio import compressed_decoder
print(f"[test-latest] flac/ogg are decoded by {compressed_decoder()}")
EOF
  nice -n 10 "$venv/bin/python" -m pytest -q -p no:cacheprovider --timeout=900 "${FAST_TESTS[@]}"
}

if [ $# -le 1 ]; then
  run_one "${1:-3.12}"
else  # one run per version, each to its end whatever the others do (errexit holds inside each)
  status=0
  for v in "$@"; do bash "$0" "$v" || status=1; done
  exit $status
fi
