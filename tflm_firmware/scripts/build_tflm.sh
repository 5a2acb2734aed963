#!/usr/bin/env bash
# build_tflm.sh — TFLM's libtensorflow-microlite.a for the firmware's cores, built
# outside the project tree from the pins in tflm_firmware/tflm_pins.txt.
#
# Why a script: TFLM's Makefile downloads its third-party trees itself (wget of
# GitHub zips, a pigweed clone) while it reads its makefiles, which fails on an
# offline machine and hides which commits a firmware was built from.  This script
# puts every tree in place first — from upstream when online, or from local clones
# or archives (--from DIR) — at the pinned commits, the way TFLM's download scripts
# do (plain files, Bazel BUILD files deleted, TFLM's patches applied), so TFLM's
# Makefile finds them all and downloads nothing.  See tflm_firmware/README.md.
set -euo pipefail
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
FIRMWARE=$(dirname "$HERE")
PROJECT=$(dirname "$FIRMWARE")
DOWNLOADS_REL=tensorflow/lite/micro/tools/make/downloads

die() { echo "build_tflm: error: $*" >&2; exit 1; }
note() { echo "build_tflm: $*" >&2; }

usage() {
  cat <<EOF
usage: build_tflm.sh [--from DIR] [--out DIR] [--cores m4,m55] [--jobs N]
                     [--toolchain-root DIR] [--python PY] [--pins FILE]
       build_tflm.sh --pins-table [--pins FILE]

Builds TFLM's libtensorflow-microlite.a (CMSIS-NN kernels) for each core into
OUT/tflite-micro-<key> (key: a hash of the pins) and prints TFLM_DIR and
TFLM_LIB_M4 / TFLM_LIB_M55 for 'make -C tflm_firmware firmware-m4 ...'.
Re-running reuses the sources and every library already built for the same pins.

  --from DIR            take TFLM and its dependencies from DIR instead of the network:
                        git clones named like the pin table (DIR/tflite-micro, DIR/flatbuffers,
                        ... DIR/CMSIS-NN; bare or mirror clones also as DIR/<clone>.git), or
                        archives of the pinned trees named DIR/<clone>.tar.gz|.tgz|.tar|.zip
  --out DIR             where sources and libraries go; outside the project
                        (default: \${XDG_CACHE_HOME:-~/.cache}/tfadvq/tflm)
  --cores LIST          comma-separated, of m4 (cortex-m4+fp) and m55 (default: m4,m55)
  --jobs N              parallel compile jobs for TFLM's make (default: $(nproc 2>/dev/null || echo 1))
  --toolchain-root DIR  the directory holding arm-none-eabi-gcc (default: found on PATH)
  --python PY           a Python with numpy and Pillow for TFLM's generators
                        (default: the first of python3 on PATH, /usr/bin/python3 that has both)
  --pins FILE           the pin table (default: tflm_firmware/tflm_pins.txt)
  --pins-table          print the pin table as the README's markdown and exit
EOF
}

# ---- arguments ---------------------------------------------------------------
PINS=$FIRMWARE/tflm_pins.txt
OUT=${XDG_CACHE_HOME:-$HOME/.cache}/tfadvq/tflm
FROM=""
CORES="m4,m55"
JOBS=$(nproc 2>/dev/null || echo 1)
TOOLCHAIN_ROOT=""
PYTHON=""
PINS_TABLE=0

while [ $# -gt 0 ]; do
  opt=$1
  case $opt in
    -h|--help) usage; exit 0 ;;
    --pins-table) PINS_TABLE=1; shift; continue ;;
    --from|--out|--cores|--jobs|--toolchain-root|--python|--pins)
      [ $# -ge 2 ] && [ -n "$2" ] || die "$opt needs a value (see --help)"
      value=$2; shift 2 ;;
    --from=*|--out=*|--cores=*|--jobs=*|--toolchain-root=*|--python=*|--pins=*)
      value=${opt#*=}; opt=${opt%%=*}; shift
      [ -n "$value" ] || die "$opt needs a value (see --help)" ;;
    *) die "unknown argument '$opt' (see --help)" ;;
  esac
  case $opt in
    --from) FROM=$value ;;
    --out) OUT=$value ;;
    --cores) CORES=$value ;;
    --jobs) JOBS=$value ;;
    --toolchain-root) TOOLCHAIN_ROOT=$value ;;
    --python) PYTHON=$value ;;
    --pins) PINS=$value ;;
  esac
done

[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "--jobs $JOBS: expected a positive whole number"

# core name -> TFLM's TARGET_ARCH and the flags its cortex_m_generic target compiles with
ARCHES=()
IFS=, read -r -a core_list <<< "$CORES"
for core in "${core_list[@]}"; do
  case $core in
    m4) ARCHES+=("cortex-m4+fp") ;;
    m55) ARCHES+=("cortex-m55") ;;
    *) die "--cores: unknown core '$core': expected m4, m55 or m4,m55" ;;
  esac
done
arch_flags() {
  case $1 in
    cortex-m4+fp) echo "-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard" ;;
    cortex-m55) echo "-mcpu=cortex-m55 -mthumb -mfpu=auto -mfloat-abi=hard" ;;
  esac
}
core_var() { case $1 in cortex-m4+fp) echo M4 ;; cortex-m55) echo M55 ;; esac; }

# ---- the pin table -------------------------------------------------------------
[ -f "$PINS" ] || die "pin table $PINS not found"
P_CLONE=(); P_PIN=(); P_DIR=(); P_PATCH=(); P_WHERE=(); P_URL=()
TFLM_ROW=-1
line_no=0
while IFS= read -r line || [ -n "$line" ]; do
  line_no=$((line_no + 1))
  line=${line%%#*}
  read -r -a f <<< "$line"
  [ ${#f[@]} -eq 0 ] && continue
  [ ${#f[@]} -eq 6 ] || die "$PINS:$line_no: expected 6 columns (clone pin dir patch pinned-in upstream), got ${#f[@]}"
  [[ ${f[0]} =~ ^[A-Za-z0-9._-]+$ ]] || die "$PINS:$line_no: clone name '${f[0]}' is not a plain name"
  [[ ${f[1]} =~ ^[A-Za-z0-9][A-Za-z0-9._/-]*$ ]] || die "$PINS:$line_no: pin '${f[1]}' is neither a commit id nor a tag"
  if [ "${f[0]}" = tflite-micro ]; then
    [ $TFLM_ROW -lt 0 ] || die "$PINS:$line_no: a second tflite-micro row"
    [ "${f[2]}" = - ] && [ "${f[3]}" = - ] || die "$PINS:$line_no: tflite-micro is the tree itself: dir and patch must be -"
    TFLM_ROW=${#P_CLONE[@]}
  else
    [ "${f[2]}" != - ] || die "$PINS:$line_no: ${f[0]} needs a directory under downloads/"
    [[ ${f[2]} != /* && ${f[2]} != *..* ]] || die "$PINS:$line_no: dir '${f[2]}' must be a relative path under downloads/"
  fi
  P_CLONE+=("${f[0]}"); P_PIN+=("${f[1]}"); P_DIR+=("${f[2]}")
  P_PATCH+=("${f[3]}"); P_WHERE+=("${f[4]}"); P_URL+=("${f[5]}")
done < "$PINS"
[ $TFLM_ROW -ge 0 ] || die "$PINS has no tflite-micro row"

if [ $PINS_TABLE = 1 ]; then
  # The README's table (tests/test_build_tflm.py compares them).
  echo "| clone (upstream) | pin | directory under \`downloads/\` | TFLM patch | pinned in (\`tools/make/\`) |"
  echo "| --- | --- | --- | --- | --- |"
  for i in "${!P_CLONE[@]}"; do
    where=${P_WHERE[$i]}
    if [ "$where" = - ]; then where="—"
    elif [[ $where == *:* ]]; then where="\`${where%%:*}\` (\`${where#*:}\`)"
    else where="\`$where\`"; fi
    dir=${P_DIR[$i]}; [ "$dir" = - ] && dir="— (the tree itself)" || dir="\`$dir\`"
    patch=${P_PATCH[$i]}; [ "$patch" = - ] && patch="—" || patch="\`$patch\`"
    echo "| [\`${P_CLONE[$i]}\`](${P_URL[$i]}) | \`${P_PIN[$i]}\` | $dir | $patch | $where |"
  done
  exit 0
fi

# The build's key: what goes into the tree (clone, pin, place, patch of every row), so
# other pins never reuse it, while another upstream or the --from route do.
KEY=$(for i in "${!P_CLONE[@]}"; do echo "${P_CLONE[$i]} ${P_PIN[$i]} ${P_DIR[$i]} ${P_PATCH[$i]}"; done |
      sha256sum | cut -c1-12)

# ---- where things go ------------------------------------------------------------
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not on PATH ($2)"; }
need realpath "coreutils"
OUT=$(realpath -m -- "$OUT")
PROJECT_REAL=$(realpath -- "$PROJECT")
if [ "$OUT" = "$PROJECT_REAL" ] || [[ $OUT == "$PROJECT_REAL"/* ]]; then
  die "--out $OUT is inside the project ($PROJECT_REAL): TFLM's sources and libraries are not part of it; name a directory outside (default ~/.cache/tfadvq/tflm)"
fi
if [ -n "$FROM" ]; then
  [ -d "$FROM" ] || die "--from $FROM is not a directory"
  FROM=$(realpath -- "$FROM")
fi

# ---- tools, toolchain, Python ---------------------------------------------------
need git "apt-get install git"
need tar "apt-get install tar"
need make "apt-get install make"
need sha256sum "coreutils"

if [ -z "$TOOLCHAIN_ROOT" ]; then
  gcc_path=$(command -v arm-none-eabi-gcc) || die "arm-none-eabi-gcc is not on PATH: install Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi and libstdc++-arm-none-eabi-newlib (scripts/setup.sh does), or name its directory with --toolchain-root DIR"
  TOOLCHAIN_ROOT=$(dirname -- "$gcc_path")
fi
TOOLCHAIN_ROOT=$(realpath -m -- "$TOOLCHAIN_ROOT")
for tool in gcc g++ ar; do
  [ -x "$TOOLCHAIN_ROOT/arm-none-eabi-$tool" ] || die "--toolchain-root $TOOLCHAIN_ROOT has no arm-none-eabi-$tool (install gcc-arm-none-eabi, or name the directory that holds it)"
done
TOOLCHAIN_VERSION=$("$TOOLCHAIN_ROOT/arm-none-eabi-gcc" --version | head -n 1)
for arch in "${ARCHES[@]}"; do
  # shellcheck disable=SC2046
  if ! probe=$(echo '#include <cstdint>' | "$TOOLCHAIN_ROOT/arm-none-eabi-g++" $(arch_flags "$arch") \
       -std=c++17 -x c++ -fsyntax-only - 2>&1); then
    die "$TOOLCHAIN_VERSION cannot compile C++ for $arch ($(arch_flags "$arch")): $(echo "$probe" | head -n 2 | tr '\n' ' ')
  (Cortex-M55 needs GCC >= 10.2; C++ headers need libnewlib-arm-none-eabi and libstdc++-arm-none-eabi-newlib)"
  fi
done

has_generators_deps() { "$1" -c 'import numpy, PIL' >/dev/null 2>&1; }
if [ -n "$PYTHON" ]; then
  command -v "$PYTHON" >/dev/null 2>&1 || die "--python $PYTHON: no such program"
  has_generators_deps "$PYTHON" || die "--python $PYTHON lacks numpy or Pillow, which TFLM's Makefile needs for its generators (pip install numpy pillow, or apt-get install python3-numpy python3-pil)"
else
  for candidate in "$(command -v python3 || true)" /usr/bin/python3; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && has_generators_deps "$candidate"; then
      PYTHON=$candidate; break
    fi
  done
  [ -n "$PYTHON" ] || die "no python3 with numpy and Pillow (tried python3 on PATH and /usr/bin/python3); TFLM's Makefile runs its generators with them: apt-get install python3-numpy python3-pil (scripts/setup.sh does), or name one with --python PY"
fi
PYTHON_EXE=$("$PYTHON" -c 'import sys; print(sys.executable)')

# ---- sources ----------------------------------------------------------------------
is_sha() { [[ $1 =~ ^[0-9a-f]{40}$ ]]; }
is_repo_root() {  # a clone (its top) or a bare repository, not a folder inside another repository
  local d=$1 gitdir
  gitdir=$(git -C "$d" rev-parse --absolute-git-dir 2>/dev/null) || return 1
  [ "$gitdir" = "$(realpath -- "$d")" ] || [ "$gitdir" = "$(realpath -- "$d")/.git" ]
}

# fetch_upstream I: a bare repository under OUT/src holding pin I, fetched from its upstream.
fetch_upstream() {
  local i=$1 repo=$OUT/src/${P_CLONE[$1]}.git pin=${P_PIN[$1]} url=${P_URL[$1]}
  if [ -d "$repo" ] && git -C "$repo" rev-parse -q --verify "$pin^{commit}" >/dev/null; then
    echo "$repo"; return
  fi
  note "fetching ${P_CLONE[$i]} $pin from $url"
  mkdir -p "$OUT/src"
  [ -d "$repo" ] || git init -q --bare "$repo"
  if is_sha "$pin"; then
    { git -C "$repo" fetch -q --depth 1 "$url" "$pin" >&2 && git -C "$repo" update-ref "refs/pins/$pin" FETCH_HEAD; } ||
      git -C "$repo" fetch -q "$url" '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*' >&2 ||
      die "cannot fetch ${P_CLONE[$i]} $pin from $url (offline? give --from DIR with clones named like the pin table)"
  else
    git -C "$repo" fetch -q --depth 1 "$url" "+refs/tags/$pin:refs/tags/$pin" >&2 ||
      die "cannot fetch tag $pin of ${P_CLONE[$i]} from $url (offline? give --from DIR with clones named like the pin table)"
  fi
  echo "$repo"
}

# locate I: where pin I comes from, checked before anything is unpacked: SRC_REPO[I]
# (a repository holding the pin, SRC_COMMIT[I] its commit) or SRC_ARCHIVE[I].
SRC_REPO=(); SRC_COMMIT=(); SRC_ARCHIVE=()
locate() {
  local i=$1 clone=${P_CLONE[$1]} pin=${P_PIN[$1]} repo="" archive="" ext commit
  if [ -z "$FROM" ]; then
    repo=$(fetch_upstream "$i")
  elif [ -d "$FROM/$clone" ]; then
    is_repo_root "$FROM/$clone" || die "--from: $FROM/$clone is not a git clone (nor a bare repository)"
    repo=$FROM/$clone
  elif [ -d "$FROM/$clone.git" ]; then  # git clone --mirror / --bare names
    is_repo_root "$FROM/$clone.git" || die "--from: $FROM/$clone.git is not a git repository"
    repo=$FROM/$clone.git
  else
    for ext in tar.gz tgz tar zip; do
      [ -f "$FROM/$clone.$ext" ] && { archive=$FROM/$clone.$ext; break; }
    done
    [ -n "$archive" ] || die "--from $FROM has neither a clone $clone/ (or $clone.git/) nor an archive $clone.tar.gz|.tgz|.tar|.zip (upstream ${P_URL[$i]}, pin $pin)"
  fi
  SRC_REPO[$i]=$repo; SRC_ARCHIVE[$i]=$archive; SRC_COMMIT[$i]=""
  [ -n "$repo" ] || return 0
  commit=$(git -C "$repo" rev-parse -q --verify "$pin^{commit}") ||
    die "$repo lacks the pinned commit $pin of $clone (fetch it there: git -C $repo fetch ${P_URL[$i]} $pin)"
  if is_sha "$pin" && [ "$commit" != "$pin" ]; then
    die "$repo: $pin names commit $commit, not itself"
  fi
  SRC_COMMIT[$i]=$commit
}

# export_tree I DEST: the files of pin I into DEST; prints what it took them from.
export_tree() {
  local i=$1 dest=$2 repo=${SRC_REPO[$1]} archive=${SRC_ARCHIVE[$1]} tmp e
  mkdir -p "$dest"
  if [ -n "$repo" ]; then
    git -C "$repo" archive --format=tar "${SRC_COMMIT[$i]}" | tar -x -C "$dest" ||
      die "cannot export ${P_CLONE[$i]} ${SRC_COMMIT[$i]} from $repo"
    echo "${P_CLONE[$i]} ${P_PIN[$i]} ${SRC_COMMIT[$i]} $repo"
    return
  fi
  # An archive of the pinned tree (GitHub's "Download ZIP" of the commit, or a
  # tarball): its commit cannot be checked, so the report says where it came from.
  tmp=$(mktemp -d "$OUT/.unpack.XXXXXX")
  case $archive in
    *.zip) need unzip "apt-get install unzip"; unzip -q "$archive" -d "$tmp" || die "cannot unpack $archive" ;;
    *) tar -x -f "$archive" -C "$tmp" || die "cannot unpack $archive" ;;
  esac
  local top=()
  for e in "$tmp"/* "$tmp"/.[!.]*; do [ -e "$e" ] && top+=("$e"); done
  if [ ${#top[@]} -eq 1 ] && [ -d "${top[0]}" ]; then
    cp -a "${top[0]}/." "$dest/"
  else
    cp -a "$tmp/." "$dest/"
  fi
  rm -rf "$tmp"
  note "${P_CLONE[$i]} taken from $archive as ${P_PIN[$i]} (an archive's commit cannot be checked)"
  echo "${P_CLONE[$i]} ${P_PIN[$i]} archive $archive"
}

# apply_patch I DIR: TFLM's patch of pin I, applied in DIR made a repository of its own
# (as TFLM's scripts do: run inside the tflite-micro tree, git would resolve the
# patch's paths against that tree instead).
apply_patch() {
  local i=$1 dir=$2 patch=${P_PATCH[$1]}
  [ -f "$TREE_TMP/$patch" ] || die "the pin table names the patch $patch for ${P_CLONE[$i]}, but tflite-micro ${P_PIN[$TFLM_ROW]} has no such file"
  (cd "$dir" && git init -q && git apply --ignore-space-change --ignore-whitespace "$TREE_TMP/$patch" && rm -rf .git) ||
    die "TFLM's patch $patch does not apply to ${P_CLONE[$i]} ${P_PIN[$i]}"
}

# One run at a time per output folder (the machine may be shared).
mkdir -p "$OUT"
need flock "util-linux"
exec 9> "$OUT/.lock"
flock -n 9 || die "another build_tflm.sh is running on $OUT (its lock: $OUT/.lock)"

TREE=$OUT/tflite-micro-$KEY
STAMPS=$TREE/.build_tflm
if [ -f "$STAMPS/sources.stamp" ]; then
  note "sources: reusing $TREE"
else
  for i in "${!P_CLONE[@]}"; do locate "$i"; done
  TREE_TMP=$TREE.partial
  rm -rf "$TREE_TMP"
  trap 'rm -rf "$TREE_TMP"' EXIT   # a failed run leaves no half-filled tree
  mkdir -p "$TREE_TMP/.build_tflm"
  {
    echo "key $KEY"
    export_tree "$TFLM_ROW" "$TREE_TMP"
    for i in "${!P_CLONE[@]}"; do
      [ "$i" = "$TFLM_ROW" ] && continue
      dest=$TREE_TMP/$DOWNLOADS_REL/${P_DIR[$i]}
      export_tree "$i" "$dest"
      find "$dest" -type f \( -name BUILD -o -name BUILD.bazel -o -name '*BUILD' \) -delete
      [ "${P_PATCH[$i]}" = - ] || apply_patch "$i" "$dest"
    done
  } > "$TREE_TMP/.build_tflm/sources.stamp.tmp"
  mv "$TREE_TMP/.build_tflm/sources.stamp.tmp" "$TREE_TMP/.build_tflm/sources.stamp"
  rm -rf "$TREE"
  mv "$TREE_TMP" "$TREE"
  note "sources: $TREE (TFLM and ${#P_CLONE[@]} pins, patches applied)"
fi

# ---- libraries --------------------------------------------------------------------
# TFLM's Makefile runs `python3` while it reads its makefiles: the checked one comes first.
mkdir -p "$OUT/bin"
printf '#!/bin/sh\nexec "%s" "$@"\n' "$PYTHON_EXE" > "$OUT/bin/python3"
chmod +x "$OUT/bin/python3"

RESULTS=("TFLM_DIR=$TREE")
for arch in "${ARCHES[@]}"; do
  gen=gen/cortex_m_generic_${arch}_default_cmsis_nn_gcc
  lib=$TREE/$gen/lib/libtensorflow-microlite.a
  stamp=$STAMPS/$arch.stamp
  want="key $KEY toolchain $TOOLCHAIN_VERSION"
  if [ -f "$stamp" ] && [ -f "$lib" ] && [ "$(cat "$stamp")" = "$want" ]; then
    note "$arch: reusing $lib"
  else
    rm -f "$stamp"
    # An interrupted or failed build resumes (TFLM's make is incremental), but
    # objects compiled by another toolchain are not reused.
    started=$STAMPS/$arch.started
    if [ -f "$started" ] && [ "$(cat "$started")" != "$want" ]; then rm -rf "${TREE:?}/$gen"; fi
    echo "$want" > "$started"
    log=$STAMPS/$arch.log
    note "$arch: building microlite with CMSIS-NN, -j$JOBS (about 25 min per CPU; log: $log)"
    if ! (cd "$TREE" && PATH="$OUT/bin:$PATH" make -j"$JOBS" -f tensorflow/lite/micro/tools/make/Makefile \
          TARGET=cortex_m_generic TARGET_ARCH="$arch" OPTIMIZED_KERNEL_DIR=cmsis_nn \
          TARGET_TOOLCHAIN_ROOT="$TOOLCHAIN_ROOT/" microlite) > "$log" 2>&1; then
      tail -n 15 "$log" >&2
      die "TFLM's 'make microlite' for $arch failed (the last lines are above; the whole log: $log)"
    fi
    [ -f "$lib" ] || die "TFLM's 'make microlite' for $arch finished without $lib (log: $log)"
    echo "$want" > "$stamp"
  fi
  RESULTS+=("TFLM_LIB_$(core_var "$arch")=$lib")
done

# The last build's paths, for `source` or a Makefile include.
printf '%s\n' "${RESULTS[@]}" > "$OUT/tflm.env"
printf '%s\n' "${RESULTS[@]}"
note "use: make -C tflm_firmware firmware-m4 TFLM_DIR=\$TFLM_DIR TFLM_LIB=\$TFLM_LIB_M4 MODEL_DIR=... (firmware-m55 with \$TFLM_LIB_M55; the lines above are also in $OUT/tflm.env)"
