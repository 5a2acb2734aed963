"""The firmware with TFLM: find a prebuilt TFLM, build the firmware for a model, talk to it under QEMU.

One owner for everything that drives ``tflm_firmware``'s full firmware from
Python: the ``firmware_session`` stage (``make firmware-demo``), the firmware
benchmark and the TFLM-built tests.  TFLM is never part of the project: it is
built outside it by ``tflm_firmware/scripts/build_tflm.sh``, which leaves the
paths it built in ``tflm.env``; ``$TFLM_DIR`` (with ``$TFLM_LIB_M4`` /
``$TFLM_LIB_M55`` or TFLM's own ``gen/`` layout) names another build.

The device speaks a line protocol (``tflm_firmware/lib/protocol.cc``); under
QEMU with ``-icount shift=0`` each reply ends in ``instructions=N``, an exact,
repeatable count (QEMU has no cycle model).
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tfadvq.errors import ConversionError

FIRMWARE = Path(__file__).resolve().parents[1] / "tflm_firmware"
BUILD_SCRIPT = "tflm_firmware/scripts/build_tflm.sh"

# The cores: TFLM's cortex_m_generic TARGET_ARCH, the Makefile's target, the QEMU machine.
CORES = {
    "cortex-m4": {"arch": "cortex-m4+fp", "make": "firmware-m4", "env": "TFLM_LIB_M4",
                  "qemu": ["-M", "mps2-an386", "-cpu", "cortex-m4"], "machine": "mps2-an386"},
    "cortex-m55": {"arch": "cortex-m55", "make": "firmware-m55", "env": "TFLM_LIB_M55",
                   "qemu": ["-M", "mps3-an547", "-cpu", "cortex-m55"], "machine": "mps3-an547"},
}
PLATFORMS = ("semihosting", "board")


class FirmwareError(ConversionError):
    """The firmware could not be built or run (TFLM missing, toolchain, QEMU)."""


@dataclasses.dataclass(frozen=True)
class Tflm:
    """A prebuilt TFLM: the source root (include root) and its microlite per core."""

    root: Path
    libraries: dict[str, Path]

    def library(self, core: str) -> Path:
        """The core's ``libtensorflow-microlite.a``; :class:`FirmwareError` when it was not built."""
        lib = self.libraries.get(core)
        if lib is None or not lib.is_file():
            raise FirmwareError(f"TFLM at {self.root} has no microlite for {core} (looked for {lib}); build it "
                                f"with `bash {BUILD_SCRIPT} --cores {core.removeprefix('cortex-')}`")
        return lib


def _cache_env() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tfadvq" / "tflm" / "tflm.env"


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _gen_library(root: Path, core: str) -> Path:
    """Where TFLM's own Makefile puts the CMSIS-NN microlite of ``core``."""
    return (root / "gen" / f"cortex_m_generic_{CORES[core]['arch']}_default_cmsis_nn_gcc" / "lib"
            / "libtensorflow-microlite.a")


def find_tflm(tflm_dir: str | os.PathLike | None = None) -> Tflm:
    """The TFLM to build with: ``tflm_dir``, else ``$TFLM_DIR``, else what the build script last built.

    Libraries: ``$TFLM_LIB_M4`` / ``$TFLM_LIB_M55`` (or the script's ``tflm.env``) when they belong to that
    root, else TFLM's ``gen/`` layout under it.  Raises :class:`FirmwareError` naming how to get one.
    """
    env = dict(os.environ)
    cached = _cache_env()
    if tflm_dir is None and not env.get("TFLM_DIR") and cached.is_file():
        env = {**_read_env(cached), **{k: v for k, v in env.items() if k.startswith("TFLM_LIB_")}}
    root_text = str(tflm_dir) if tflm_dir is not None else env.get("TFLM_DIR")
    if not root_text:
        raise FirmwareError(f"TFLM is not built: run `bash {BUILD_SCRIPT}` (it builds TFLM outside the project "
                            f"and records where in {cached}), or set TFLM_DIR to a tflite-micro tree")
    root = Path(root_text).expanduser().resolve()
    if not (root / "tensorflow" / "lite" / "micro").is_dir():
        raise FirmwareError(f"TFLM_DIR {root} is not a tflite-micro source tree (no tensorflow/lite/micro)")
    libraries = {}
    for core, spec in CORES.items():
        named = env.get(spec["env"])
        libraries[core] = Path(named) if named and Path(named).resolve().is_relative_to(root) \
            else _gen_library(root, core)
    return Tflm(root, libraries)


def build_firmware(core: str, tflm: Tflm, model_dir: Path, build: Path, platform: str = "semihosting",
                   options: Mapping[str, int] | None = None, sources: Path = FIRMWARE) -> Path:
    """Build the full firmware for ``core`` around the C sources in ``model_dir``; return its ELF.

    ``options``: build options (tflm_firmware/README.md), e.g. ``{"SV_MAX_SECONDS": 3,
    "SV_CAPTURE_SECONDS": 0}``; the firmware's defaults otherwise.  ``sources``: the
    ``tflm_firmware`` tree to build (another commit's, to measure what a change bought).
    """
    if core not in CORES:
        raise FirmwareError(f"core {core!r}; accepted: {', '.join(CORES)}")
    if platform not in PLATFORMS:
        raise FirmwareError(f"platform {platform!r}; accepted: {', '.join(PLATFORMS)}")
    if shutil.which("arm-none-eabi-g++") is None:
        raise FirmwareError("arm-none-eabi-g++ is not on PATH (Debian: gcc-arm-none-eabi "
                            "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib)")
    command = ["make", "-s", "-C", str(sources), CORES[core]["make"], f"BUILD={Path(build).resolve()}",
               f"TFLM_DIR={tflm.root}", f"TFLM_LIB={tflm.library(core)}", f"MODEL_DIR={Path(model_dir).resolve()}",
               f"PLATFORM={platform}", *(f"{k}={v}" for k, v in (options or {}).items())]
    run = subprocess.run(command, check=False, capture_output=True, text=True)
    if run.returncode != 0:
        tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-12:])
        raise FirmwareError(f"building the {core} firmware failed ({' '.join(command[3:5])} ...):\n{tail}")
    name = "firmware_board.elf" if platform == "board" else "firmware.elf"
    return Path(build).resolve() / core / "fw" / name


def run_session(core: str, elf: Path, commands: str, cwd: Path, timeout: int = 3600) -> list[str]:
    """Feed ``commands`` (protocol lines) to the semihosting firmware on QEMU; its output lines.

    Files named in the commands are opened by the device through semihosting,
    relative to ``cwd``.  The firmware exits 0 when every command succeeded and
    2 when some were refused (their ``ERR`` replies are in the lines); anything
    else (1: it did not boot) raises :class:`FirmwareError`.
    """
    if shutil.which("qemu-system-arm") is None:
        raise FirmwareError("qemu-system-arm is not on PATH (Debian: qemu-system-arm)")
    qemu = ["qemu-system-arm", *CORES[core]["qemu"], "-nographic", "-monitor", "none",
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]
    try:
        run = subprocess.run(qemu, check=False, input=commands, capture_output=True, text=True, cwd=cwd,
                             timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise FirmwareError(f"{elf} on QEMU did not finish in {timeout} s") from exc
    if run.returncode not in (0, 2) or not any(x.startswith("READY") for x in run.stdout.splitlines()):
        raise FirmwareError(f"{elf} on QEMU failed (exit {run.returncode}):\n"
                            + "\n".join((run.stdout + run.stderr).strip().splitlines()[-12:]))
    return run.stdout.splitlines()


def section_sizes(elf: Path) -> dict[str, int]:
    """``{section: bytes}`` of ``elf`` (``arm-none-eabi-size -A``): RAM is ``.data`` + ``.bss``."""
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    return {f[0]: int(f[1]) for f in (line.split() for line in out.splitlines()) if f and f[0].startswith(".")}


def fields(line: str) -> dict[str, str]:
    """The ``key=value`` fields of a device line (``READY``, ``OK ACCEPT ... score=``, ``BYE``)."""
    return dict(re.findall(r"(\w+)=(\S+)", line))


def score(line: str) -> float | None:
    """The score of a verify reply, None for any other line."""
    found = re.match(r"(?:\w+ )?OK (?:ACCEPT|REJECT) \S+ score=(-?[\d.]+)", line)
    return float(found.group(1)) if found else None
