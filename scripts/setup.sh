#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian machine: system packages (TTS engines for
# the generated corpus, the Arm toolchain and QEMU for the firmware) and the Python
# virtual environment in .venv with tfadvq installed in editable mode, at the exact
# versions of constraints/ci.txt (setup.cfg states only ranges).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  espeak-ng flite festival sox
  festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-ca-ona-hts
  festvox-italp16k festvox-itapc16k festvox-czech-dita festvox-czech-krb
  festvox-czech-machac festvox-ru festvox-suopuhe-lj festvox-suopuhe-mv
  festvox-hi-nsk festvox-mr-nsk festvox-te-nsk
  make g++ cmake
  # the firmware for Cortex-M4 and Cortex-M55 (QEMU mps2-an386 / mps3-an547), and what
  # building TFLM's microlite for them needs (tflm_firmware/README.md): git for
  # its pinned dependencies, numpy and Pillow for the Python generators TFLM's Makefile runs
  gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm
  git python3-numpy python3-pil
  # real speech for tests/test_real_corpus.py (tfadvq data real --sources asterisk, es + fr voices; ~44 MB);
  # the full real set also needs the other asterisk voices, tuxpaint-stamps-default and hedgewars-data
  # (`tfadvq data real --install` as root, or the apt-get command its error names)
  asterisk-core-sounds-es-wav asterisk-prompt-es-co asterisk-core-sounds-fr-wav asterisk-prompt-fr-armelle
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[setup] installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.tfadvq-setup
want="$(cat setup.cfg pyproject.toml constraints/ci.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing the Python environment into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -c constraints/ci.txt -e ".[dev,tfio]"
  echo "$want" > "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python --version), tfadvq $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("tfadvq"))')"
