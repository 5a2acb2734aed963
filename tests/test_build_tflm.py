"""tflm_firmware/scripts/build_tflm.sh: arguments, refusals, and a whole run on stub repositories.

TFLM itself is not built here (about 25 min per core).  The run uses small git
repositories made in the test, named like the pin table, and a pin table naming
their commits (``--pins``); the stub tflite-micro carries TFLM's layout (its
Makefile at tensorflow/lite/micro/tools/make/, its patches) and a ``microlite``
target that checks the dependencies it is given and archives one object
compiled with the toolchain the script passes.  So everything of the script runs
for real: checkout by commit id or tag from the clones, an archive in place of
a clone, BUILD files deleted, TFLM's patches applied, Python/toolchain on PATH,
stamps and reuse.  The pin table's README copy is checked against the real pins.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tflm_firmware" / "scripts" / "build_tflm.sh"
PINS = ROOT / "tflm_firmware" / "tflm_pins.txt"
README = ROOT / "tflm_firmware" / "README.md"

needs_toolchain = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                     reason="arm-none-eabi-gcc not installed (scripts/setup.sh installs it)")


BASH = shutil.which("bash")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, str(SCRIPT), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def assert_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """The run failed with one `build_tflm: error: ...` naming every fragment."""
    assert result.returncode != 0, result.stdout
    assert result.stderr.count("build_tflm: error: ") == 1, result.stderr
    message = result.stderr.split("build_tflm: error: ", 1)[1]
    for fragment in fragments:
        assert fragment in message, result.stderr


def test_help_names_every_option():
    result = run("--help")
    assert result.returncode == 0
    for option in ("--from", "--out", "--cores", "--jobs", "--toolchain-root", "--python", "--pins",
                   "--pins-table"):
        assert option in result.stdout


@pytest.mark.parametrize("args,fragment", [
    (["--cores", "m7"], "unknown core 'm7'"),
    (["--cores", "m4,,m55"], "unknown core ''"),
    (["--jobs", "0"], "--jobs 0: expected a positive whole number"),
    (["--jobs=two"], "--jobs two"),
    (["--out"], "--out needs a value"),
    (["--from="], "--from needs a value"),
    (["--frobnicate"], "unknown argument '--frobnicate'"),
    (["extra"], "unknown argument 'extra'"),
    (["--pins", "/nonexistent/pins.txt"], "pin table /nonexistent/pins.txt not found"),
])
def test_bad_arguments_are_named(tmp_path, args, fragment):
    # --out first: a mistake in the test must not reach the default cache or the network.
    assert_error(run("--out", str(tmp_path / "out"), *args), fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("inside", [".", "build/tflm", "tflm_firmware/build/../tflm"])
def test_output_inside_the_project_is_refused(inside):
    out = ROOT / inside
    existed = out.exists()
    assert_error(run("--out", str(out)), "is inside the project", str(ROOT))
    assert out.exists() == existed


def test_output_inside_the_project_through_a_symlink_is_refused(tmp_path):
    link = tmp_path / "project"
    link.symlink_to(ROOT)
    assert_error(run("--out", str(link / "tflm")), "is inside the project")


def test_from_must_be_a_directory(tmp_path):
    assert_error(run("--out", str(tmp_path / "out"), "--from", str(tmp_path / "missing")),
                 f"--from {tmp_path / 'missing'} is not a directory")


def _path_without_toolchain(tmp_path: Path) -> str:
    """A PATH with the ordinary tools the script needs, but no arm-none-eabi-*."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "nproc", "realpath", "sha256sum", "grep", "sed", "tr", "cut", "head",
                 "git", "tar", "make", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_missing_toolchain_is_named(tmp_path):
    result = run("--out", str(tmp_path / "out"), env={"PATH": _path_without_toolchain(tmp_path)})
    assert_error(result, "arm-none-eabi-gcc is not on PATH", "gcc-arm-none-eabi", "--toolchain-root")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_error(run("--out", str(tmp_path / "out"), "--toolchain-root", str(empty)),
                 f"--toolchain-root {empty} has no arm-none-eabi-gcc")
    assert not (tmp_path / "out").exists()


@needs_toolchain
def test_python_without_pillow_is_named(tmp_path):
    shadow = tmp_path / "shadow" / "PIL"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no Pillow here')\n")
    result = run("--out", str(tmp_path / "out"), "--python", sys.executable,
                 env={"PYTHONPATH": str(shadow.parent)})
    assert_error(result, f"--python {sys.executable} lacks numpy or Pillow")


def test_malformed_pin_table_is_named(tmp_path):
    pins = tmp_path / "pins.txt"
    pins.write_text("tflite-micro 0123456789012345678901234567890123456789 - - -\n")
    assert_error(run("--pins", str(pins), "--pins-table"), f"{pins}:1: expected 6 columns")
    pins.write_text("flatbuffers v1 flatbuffers - - file:///x\n")
    assert_error(run("--pins", str(pins), "--pins-table"), "has no tflite-micro row")


# ---- the pin table and the README --------------------------------------------------

def test_readme_pin_table_is_the_pin_file():
    """The README's table is `build_tflm.sh --pins-table`, and it names no commit the pins lack."""
    text = README.read_text()
    begin = "<!-- tflm pins: scripts/build_tflm.sh --pins-table -->\n"
    end = "<!-- end of tflm pins -->"
    assert begin in text and end in text
    table = text.split(begin, 1)[1].split(end, 1)[0]
    result = run("--pins-table")
    assert result.returncode == 0, result.stderr
    assert table == result.stdout
    pinned = set(re.findall(r"\b[0-9a-f]{40}\b", PINS.read_text()))
    assert len(pinned) == 7
    assert set(re.findall(r"\b[0-9a-f]{40}\b", text)) <= pinned


# ---- a whole run on stub repositories -------------------------------------------------

STUB_MAKEFILE = """\
# Stub of TFLM's Makefile: checks what build_tflm.sh put in place, then archives
# one object compiled with the toolchain it names.
DL := tensorflow/lite/micro/tools/make/downloads
GEN := gen/$(TARGET)_$(TARGET_ARCH)_default_$(OPTIMIZED_KERNEL_DIR)_gcc
microlite:
\ttest "$(TARGET)" = cortex_m_generic -a "$(OPTIMIZED_KERNEL_DIR)" = cmsis_nn
\tgrep -q 'patched by TFLM' $(DL)/flatbuffers/include/version.h
\ttest -f $(DL)/cmsis/Core/core.h -a -f $(DL)/cmsis/Cortex_DFP/dfp.h -a -f $(DL)/kissfft/kiss_fft.c
\tpython3 -c 'import numpy, PIL'
\ttest -z "$(STUB_FAIL)"
\tmkdir -p $(GEN)/lib
\techo 'int tflm_stub(void) { return 1; }' > $(GEN)/stub.c
\t$(TARGET_TOOLCHAIN_ROOT)arm-none-eabi-gcc -mthumb -c $(GEN)/stub.c -o $(GEN)/stub.o
\t$(TARGET_TOOLCHAIN_ROOT)arm-none-eabi-ar rcs $(GEN)/lib/libtensorflow-microlite.a $(GEN)/stub.o
\techo $(TARGET_ARCH) >> $(STUB_BUILD_LOG)
"""

FLATBUFFERS_PATCH = """\
--- a/include/version.h
+++ b/include/version.h
@@ -1 +1 @@
-v1
+v1 patched by TFLM
"""


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def stub_repo(path: Path, files: dict[str, str]) -> str:
    """A git repository at `path` with one commit of `files`; returns the commit id."""
    path.mkdir(parents=True)
    git(path, "init", "-q")
    commit_files(path, files)
    return git(path, "rev-parse", "HEAD")


def commit_files(repo: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "stub")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture()
def stubs(tmp_path):
    """Clones named like the pin table in tmp/clones, and a pin table naming their commits.

    flatbuffers is pinned by an annotated tag and kissfft by a commit id, and both
    clones have a later commit on top, so a checkout of HEAD instead of the pin
    shows.  Cortex_DFP is an archive, as GitHub's "Download ZIP" would give it, and
    CMSIS_6 a bare mirror named CMSIS_6.git (git clone --mirror).
    """
    clones = tmp_path / "clones"
    make_dir = "tensorflow/lite/micro/tools/make"
    tflm = stub_repo(clones / "tflite-micro", {
        f"{make_dir}/Makefile": STUB_MAKEFILE,
        f"{make_dir}/flatbuffers.patch": FLATBUFFERS_PATCH,
    })
    stub_repo(clones / "flatbuffers", {"include/version.h": "v1\n", "BUILD.bazel": "x", "src/BUILD": "x"})
    git(clones / "flatbuffers", "tag", "-a", "v1.0", "-m", "release")
    commit_files(clones / "flatbuffers", {"include/version.h": "v2\n"})
    kissfft = stub_repo(clones / "kissfft", {"kiss_fft.c": "/* pinned */\n"})
    later = commit_files(clones / "kissfft", {"kiss_fft.c": "/* later */\n"})
    cmsis = stub_repo(tmp_path / "cmsis", {"Core/core.h": "/* core */\n", "CMSIS/BUILD": "x"})
    subprocess.run(["git", "clone", "-q", "--mirror", str(tmp_path / "cmsis"), str(clones / "CMSIS_6.git")],
                   check=True)
    dfp = stub_repo(tmp_path / "dfp", {"dfp.h": "/* dfp */\n"})
    git(tmp_path / "dfp", "archive", "--prefix", f"Cortex_DFP-{dfp}/", "-o", str(clones / "Cortex_DFP.tar.gz"),
        "HEAD")
    nowhere = "file:///nonexistent/upstream"
    pins = tmp_path / "pins.txt"
    pins.write_text(f"""\
# clone pin dir patch pinned-in upstream
tflite-micro {tflm} - - - {nowhere}
flatbuffers v1.0 flatbuffers {make_dir}/flatbuffers.patch flatbuffers_download.sh:ZIP_PREFIX {nowhere}
kissfft {kissfft} kissfft - kissfft_download.sh {nowhere}
CMSIS_6 {cmsis} cmsis - ext_libs/cmsis_download.sh:ZIP_PREFIX {nowhere}
Cortex_DFP {dfp} cmsis/Cortex_DFP - ext_libs/cmsis_download.sh:ZIP_PREFIX {nowhere}
""")
    return dict(clones=clones, pins=pins, out=tmp_path / "out", log=tmp_path / "builds.log",
                kissfft=kissfft, kissfft_later=later)


def build(stubs, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run("--from", str(stubs["clones"]), "--out", str(stubs["out"]), "--pins", str(stubs["pins"]),
               "--jobs", "1", *extra, env={"STUB_BUILD_LOG": str(stubs["log"]), **(env or {})})


def outputs(result: subprocess.CompletedProcess) -> dict[str, Path]:
    return {key: Path(value) for key, value in
            (line.split("=", 1) for line in result.stdout.strip().splitlines())}


@needs_toolchain
def test_local_clones_give_both_libraries_then_are_reused(stubs):
    first = build(stubs)
    assert first.returncode == 0, first.stderr
    paths = outputs(first)
    assert set(paths) == {"TFLM_DIR", "TFLM_LIB_M4", "TFLM_LIB_M55"}
    tree = paths["TFLM_DIR"]
    assert tree.parent == stubs["out"] and tree.name.startswith("tflite-micro-")
    assert paths["TFLM_LIB_M4"] == tree / "gen/cortex_m_generic_cortex-m4+fp_default_cmsis_nn_gcc/lib/libtensorflow-microlite.a"
    for core in ("M4", "M55"):
        assert paths[f"TFLM_LIB_{core}"].read_bytes().startswith(b"!<arch>\n")
    assert (stubs["out"] / "tflm.env").read_text() == first.stdout

    downloads = tree / "tensorflow/lite/micro/tools/make/downloads"
    assert (downloads / "flatbuffers/include/version.h").read_text() == "v1 patched by TFLM\n"  # the tag, patched
    assert (downloads / "kissfft/kiss_fft.c").read_text() == "/* pinned */\n"  # the commit, not HEAD
    assert (downloads / "cmsis/Cortex_DFP/dfp.h").read_text() == "/* dfp */\n"  # from the archive
    leftovers = [p for p in tree.rglob("*") if p.name in ("BUILD", "BUILD.bazel", ".git")]
    assert leftovers == []
    assert "as " in first.stderr and "Cortex_DFP.tar.gz" in first.stderr
    assert stubs["log"].read_text().split() == ["cortex-m4+fp", "cortex-m55"]

    again = build(stubs)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert "sources: reusing" in again.stderr and again.stderr.count("reusing") == 3
    assert stubs["log"].read_text().split() == ["cortex-m4+fp", "cortex-m55"]

    # Another pin is another tree, built on its own; the first one stays.
    stubs["pins"].write_text(stubs["pins"].read_text().replace(stubs["kissfft"], stubs["kissfft_later"]))
    moved = build(stubs, "--cores", "m55")
    assert moved.returncode == 0, moved.stderr
    other = outputs(moved)
    assert set(other) == {"TFLM_DIR", "TFLM_LIB_M55"} and other["TFLM_DIR"] != tree
    assert (other["TFLM_DIR"] / "tensorflow/lite/micro/tools/make/downloads/kissfft/kiss_fft.c").read_text() \
        == "/* later */\n"
    assert stubs["log"].read_text().split() == ["cortex-m4+fp", "cortex-m55", "cortex-m55"]
    assert paths["TFLM_LIB_M4"].exists()


@needs_toolchain
def test_failed_make_is_named_and_not_stamped(stubs):
    failed = build(stubs, "--cores", "m4", env={"STUB_FAIL": "1"})
    assert_error(failed, "TFLM's 'make microlite' for cortex-m4+fp failed", "cortex-m4+fp.log")
    tree = stubs["out"] / next(p.name for p in stubs["out"].iterdir() if p.name.startswith("tflite-micro-"))
    gen = tree / "gen/cortex_m_generic_cortex-m4+fp_default_cmsis_nn_gcc"
    gen.mkdir(parents=True)
    (gen / "object_of_the_failed_run.o").write_text("")
    retried = build(stubs, "--cores", "m4")
    assert retried.returncode == 0, retried.stderr
    assert "sources: reusing" in retried.stderr and "cortex-m4+fp: building" in retried.stderr
    assert outputs(retried)["TFLM_LIB_M4"].exists()
    assert (gen / "object_of_the_failed_run.o").exists()  # the same toolchain resumes
    # Objects of another toolchain are not reused.
    (tree / ".build_tflm/cortex-m4+fp.stamp").unlink()
    (tree / ".build_tflm/cortex-m4+fp.started").write_text("key x toolchain another gcc\n")
    assert build(stubs, "--cores", "m4").returncode == 0
    assert not (gen / "object_of_the_failed_run.o").exists()


@needs_toolchain
@pytest.mark.parametrize("breakage,fragment", [
    ("missing_commit", "lacks the pinned commit deadbeefdeadbeefdeadbeefdeadbeefdeadbeef of kissfft"),
    ("missing_clone", "has neither a clone CMSIS_6/ (or CMSIS_6.git/) nor an archive CMSIS_6.tar.gz"),
    ("not_a_clone", "CMSIS_6 is not a git clone"),
    ("patch_missing", "names the patch tensorflow/lite/micro/tools/make/flatbuffers.patch for flatbuffers"),
    ("patch_conflict", "patch tensorflow/lite/micro/tools/make/flatbuffers.patch does not apply to flatbuffers v1.0"),
])
def test_bad_sources_are_named_and_leave_no_tree(stubs, breakage, fragment):
    clones, pins = stubs["clones"], stubs["pins"]
    if breakage == "missing_commit":
        pins.write_text(pins.read_text().replace(stubs["kissfft"], "deadbeef" * 5))
    elif breakage in ("missing_clone", "not_a_clone"):
        shutil.rmtree(clones / "CMSIS_6.git")
        if breakage == "not_a_clone":
            (clones / "CMSIS_6").mkdir()
    else:
        tflm = clones / "tflite-micro"
        patch = tflm / "tensorflow/lite/micro/tools/make/flatbuffers.patch"
        if breakage == "patch_missing":
            patch.unlink()
            git(tflm, "commit", "-q", "-a", "-m", "no patch")
        else:
            commit_files(tflm, {str(patch.relative_to(tflm)): FLATBUFFERS_PATCH.replace("-v1", "-v0")})
        pins.write_text(re.sub(r"(?m)^tflite-micro \S+", f"tflite-micro {git(tflm, 'rev-parse', 'HEAD')}",
                               pins.read_text()))
    assert_error(build(stubs), fragment)
    assert sorted(p.name for p in stubs["out"].iterdir() if p.name.startswith("tflite-micro")) == []


@needs_toolchain
def test_online_fetches_each_pin_once_from_its_upstream(stubs, tmp_path):
    """Without --from, each pin is fetched from the row's upstream (here file:// repositories)
    into OUT/src/<clone>.git; a later run needs no upstream any more."""
    upstream = tmp_path / "upstream"
    stubs["clones"].rename(upstream)
    dfp = tmp_path / "dfp"
    (upstream / "Cortex_DFP.tar.gz").unlink()
    dfp.rename(upstream / "Cortex_DFP")
    pins = stubs["pins"]
    text = pins.read_text()
    for clone in ("tflite-micro", "flatbuffers", "kissfft", "CMSIS_6", "Cortex_DFP"):
        where = upstream / (clone + ".git" if clone == "CMSIS_6" else clone)
        text = re.sub(rf"(?m)^({clone} .*) file:///nonexistent/upstream$", rf"\1 file://{where}", text)
    pins.write_text(text)
    common = ("--out", str(stubs["out"]), "--pins", str(pins), "--jobs", "1", "--cores", "m4")
    env = {"STUB_BUILD_LOG": str(stubs["log"])}
    first = run(*common, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("build_tflm: fetching") == 5
    assert sorted(p.name for p in (stubs["out"] / "src").iterdir()) == [
        "CMSIS_6.git", "Cortex_DFP.git", "flatbuffers.git", "kissfft.git", "tflite-micro.git"]
    tree = outputs(first)["TFLM_DIR"]
    assert (tree / "tensorflow/lite/micro/tools/make/downloads/kissfft/kiss_fft.c").read_text() == "/* pinned */\n"

    shutil.rmtree(upstream)
    shutil.rmtree(tree)
    again = run(*common, env=env)
    assert again.returncode == 0, again.stderr
    assert "fetching" not in again.stderr
    assert outputs(again) == outputs(first)
    assert stubs["log"].read_text().split() == ["cortex-m4+fp", "cortex-m4+fp"]


@needs_toolchain
def test_a_second_run_on_the_same_output_is_refused_while_one_runs(stubs):
    stubs["out"].mkdir()
    with open(stubs["out"] / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert_error(build(stubs), f"another build_tflm.sh is running on {stubs['out']}")
    assert build(stubs, "--cores", "m4").returncode == 0
