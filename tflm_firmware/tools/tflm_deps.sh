#!/usr/bin/env bash
# Put TFLM's third-party dependencies in place without network access.
#
#   tools/tflm_deps.sh TFLM_DIR SRC_DIR
#
# TFLM_DIR: a tflite-micro source tree. SRC_DIR: one git clone (bare or not) per
# dependency, named after its GitHub repository:
#   flatbuffers gemmlowp ruy kissfft CMSIS_6 Cortex_DFP CMSIS-NN pigweed
# (github.com/google/{flatbuffers,gemmlowp,ruy,pigweed}, mborgerding/kissfft,
# ARM-software/{CMSIS_6,Cortex_DFP,CMSIS-NN}; pigweed's upstream is
# pigweed.googlesource.com/pigweed/pigweed).
#
# TFLM's Makefile downloads these on first use (wget/git clone) unless the
# directory already exists under tensorflow/lite/micro/tools/make/downloads/.
# This script fills that directory the way TFLM's own download scripts do
# (tools/make/{flatbuffers,kissfft,pigweed}_download.sh, ext_libs/cmsis*_download.sh,
# download_and_extract.sh): the commit each one pins, BUILD files removed, and
# TFLM's patches for flatbuffers, kissfft and pigweed applied. The commits are
# read from those scripts, so the pins stay TFLM's own.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 TFLM_DIR SRC_DIR" >&2
  exit 2
fi
TFLM_DIR=$(cd "$1" && pwd)
SRC_DIR=$(cd "$2" && pwd)
MAKE_DIR="$TFLM_DIR/tensorflow/lite/micro/tools/make"
DL="$MAKE_DIR/downloads"
[ -f "$MAKE_DIR/Makefile" ] || { echo "$TFLM_DIR is not a tflite-micro tree" >&2; exit 2; }
mkdir -p "$DL"

# pin FILE SED_EXPR: the one value a TFLM script pins (first match).
pin() {
  local value
  value=$(sed -n -E "$2" "$MAKE_DIR/$1" | head -n 1)
  [ -n "$value" ] || { echo "no pin found in $MAKE_DIR/$1" >&2; exit 1; }
  echo "$value"
}

# unpack REPO REV DEST: REV of SRC_DIR/REPO as plain files in DEST.
unpack() {
  local repo="$SRC_DIR/$1" rev=$2 dest=$3
  [ -d "$repo" ] || { echo "missing clone $repo" >&2; exit 1; }
  git -C "$repo" rev-parse -q --verify "$rev^{commit}" > /dev/null ||
    { echo "$repo lacks $rev (fetch it)" >&2; exit 1; }
  mkdir -p "$dest"
  git -C "$repo" archive --format=tar "$rev" | tar -x -C "$dest"
  find "$dest" -type f \( -name BUILD -o -name BUILD.bazel -o -name '*BUILD' \) -delete
  echo "$1 $rev -> ${dest#"$TFLM_DIR"/}"
}

# patch_dir DEST PATCH: as TFLM's apply_patch_to_folder, in a repository of
# its own (git apply run inside another repository would resolve the patch's
# paths against that repository's root).
patch_dir() {
  git -C "$1" init -q
  git -C "$1" apply --ignore-space-change --ignore-whitespace "$2"
  rm -rf "$1/.git"
}

# fresh NAME: true when downloads/NAME is to be filled (an existing one is kept,
# as TFLM's scripts do).
fresh() {
  if [ -d "$DL/$1" ]; then echo "$1 already in place, kept"; return 1; fi
}

sha_of_url='s/^[^#]*archive\/([0-9a-f]{40})\.zip.*/\1/p'

if fresh flatbuffers; then
  unpack flatbuffers "$(pin flatbuffers_download.sh 's/^ *ZIP_PREFIX="([^"]+)".*/\1/p')" "$DL/flatbuffers"
  patch_dir "$DL/flatbuffers" "$MAKE_DIR/flatbuffers.patch"
fi
if fresh gemmlowp; then
  unpack gemmlowp "$(pin third_party_downloads.inc "/GEMMLOWP_URL/$sha_of_url")" "$DL/gemmlowp"
fi
if fresh ruy; then
  unpack ruy "$(pin third_party_downloads.inc "/RUY_URL/$sha_of_url")" "$DL/ruy"
fi
if fresh kissfft; then
  unpack kissfft "$(pin kissfft_download.sh 's/.*refs\/tags\/(v[0-9]+)\.zip.*/\1/p')" "$DL/kissfft"
  patch_dir "$DL/kissfft" "$TFLM_DIR/third_party/kissfft/kissfft.patch"
fi
if fresh pigweed; then
  unpack pigweed "$(pin pigweed_download.sh 's/^ *git checkout ([0-9a-f]{40}).*/\1/p')" "$DL/pigweed"
  patch_dir "$DL/pigweed" "$MAKE_DIR/pigweed.patch"
fi
if fresh cmsis; then
  cmsis_pins=$(sed -n -E 's/^ *ZIP_PREFIX="([0-9a-f]{40})".*/\1/p' "$MAKE_DIR/ext_libs/cmsis_download.sh")
  [ "$(echo "$cmsis_pins" | wc -l)" -eq 2 ] || { echo "expected 2 pins in cmsis_download.sh" >&2; exit 1; }
  unpack CMSIS_6 "$(echo "$cmsis_pins" | sed -n 1p)" "$DL/cmsis"
  unpack Cortex_DFP "$(echo "$cmsis_pins" | sed -n 2p)" "$DL/cmsis/Cortex_DFP"
fi
if fresh cmsis_nn; then
  unpack CMSIS-NN "$(pin ext_libs/cmsis_nn_download.sh 's/^ *ZIP_PREFIX_NN="([0-9a-f]{40})".*/\1/p')" "$DL/cmsis_nn"
fi
echo "TFLM dependencies in $DL"
