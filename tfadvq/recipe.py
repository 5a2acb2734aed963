"""Recipes: a typed YAML list of stages, run in order, reused when nothing they depend on changed.

A recipe (WeSpeaker's "stages you can start and stop at", with typed configs)::

    scoring: {window_frames: 200}          # the device's scoring schedule, shared by all stages
    plugins: [my_package.my_stages]        # modules that register more stage types (optional)
    stages:
      - {type: corpus}
      - {type: train, config: demo, corpus: corpus}
      - {type: evaluate, name: evaluate_fp32, model: train, corpus: corpus}

Each entry names a registered stage *type* (:func:`register_stage`) and,
optionally, a unique *name* (default: the type); the other keys are that
type's dataclass fields, type-checked by :func:`tfadvq.config.from_dict`.  A
field that refers to an earlier stage holds its name (``model: train``), so a
recipe is a small graph whose edges the stages declare (:meth:`Stage.uses`).

Every stage writes into ``WORKDIR/<name>`` and ends with a record
(:data:`tfadvq.rundir.RECORD`: type, config, fingerprint, inputs, outputs,
metrics, seconds).  A stage's *fingerprint* hashes its type, its config, what
it declares it also depends on (:meth:`Stage.fingerprint`) and the output
digests of the stages it uses; a stage whose fingerprint equals its record's
is reused -- when its outputs still match the digests in its record (a cheap
check of sizes and modification times, the full digest when those changed;
``reuse_check: content`` at the top of the recipe hashes every output file's
content on every run, for an external corpus whose files may change without
their size and time changing) -- otherwise it re-runs, saying why, and so,
through their fingerprints, does every stage that uses it (configs are hashed without the fields
that hold their defaults, :func:`tfadvq.config.identity`, so a field added in a later version keeps
finished stages reusable).  ``from_stage`` forces a re-run from that stage on;
``to_stage`` stops after it.  Fingerprints cover configs and data, not
tfadvq's own code: after changing it, re-run with ``from_stage``.  A stage that changed since its last attempt
starts in a clean directory; one interrupted with the same fingerprint keeps
its directory, so training resumes where it stopped.

Adding a stage type needs no CLI edit: decorate a dataclass with
``@register_stage("name")`` in any module (listed under ``plugins`` for
``tfadvq run``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from tfadvq import rundir
from tfadvq.config import from_dict, identity, read_yaml, to_dict
from tfadvq.errors import ConfigError
from tfadvq.windows import ScoringConfig

S = TypeVar("S")


class Stage(Protocol):
    """What a stage type provides (a dataclass registered with :func:`register_stage`)."""

    type_name: ClassVar[str]

    def uses(self) -> dict[str, str]:
        """``{field: stage name}`` of the earlier stages this one reads."""

    def fingerprint(self, ctx: StageContext) -> dict[str, Any]:
        """What else the result depends on (resolved configs, digests of external files)."""

    def run(self, ctx: StageContext) -> StageResult:
        """Do the work into ``ctx.out``; return outputs and metrics."""


_REGISTRY: dict[str, type] = {}
REUSE_CHECKS = ("stat", "content")


def register_stage(type_name: str) -> Callable[[type[S]], type[S]]:
    """Class decorator: register a stage dataclass under ``type_name`` (see module doc)."""

    def register(cls: type[S]) -> type[S]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"stage {type_name!r}: {cls.__name__} must be a dataclass")
        for method in ("run",):
            if not callable(getattr(cls, method, None)):
                raise TypeError(f"stage {type_name!r}: {cls.__name__} has no {method}()")
        cls.type_name = type_name
        _REGISTRY[type_name] = cls
        return cls

    return register


PACKAGED_STAGES = "tfadvq.stages"
"""The packaged stage types are a plugin like any other: the engine names the module, it never
imports stage code itself (the stages build on the engine, so the dependency points one way)."""


def stage_types() -> dict[str, type]:
    """Every registered stage type (the packaged plugin is loaded first)."""
    importlib.import_module(PACKAGED_STAGES)
    return dict(_REGISTRY)


class StageBase:
    """Defaults for :class:`Stage` methods; stage dataclasses may inherit them."""

    type_name: ClassVar[str] = ""
    #: The output keys this type's records hold (empty: not declared, nothing is checked).
    produces: ClassVar[tuple[str, ...]] = ()
    #: ``{field: output key}`` the stage a field names must produce (checked when the recipe is parsed).
    needs: ClassVar[dict[str, str]] = {}
    #: ``{old field: new field}`` of fields renamed since a release: an old recipe fails naming the new one.
    renamed: ClassVar[dict[str, str]] = {}

    def uses(self) -> dict[str, str]:
        return {}

    def fingerprint(self, ctx: StageContext) -> dict[str, Any]:
        return {}


@dataclasses.dataclass
class StageResult:
    """What a stage returns: named output paths, metrics for the record and summary, a one-line result."""

    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    summary: str = ""


@dataclasses.dataclass
class StageEntry:
    """One parsed recipe entry."""

    name: str
    stage: Any  # an instance of a registered stage dataclass


@dataclasses.dataclass
class Recipe:
    """A parsed recipe: the shared scoring schedule, plugins, and the stages in order."""

    stages: list[StageEntry]
    scoring: ScoringConfig = dataclasses.field(default_factory=ScoringConfig)
    plugins: list[str] = dataclasses.field(default_factory=list)
    source: str = ""
    reuse_check: str = "stat"  # how reused outputs are checked: "stat" (size + time, then digest) or "content"

    def index(self, name: str) -> int:
        for i, entry in enumerate(self.stages):
            if entry.name == name:
                return i
        raise ConfigError(f"recipe {self.source}: no stage named {name!r}; stages: "
                          f"{[e.name for e in self.stages]}")

    def to_dict(self) -> dict[str, Any]:
        return {"scoring": to_dict(self.scoring), "plugins": list(self.plugins), "reuse_check": self.reuse_check,
                "stages": [{"type": e.stage.type_name, "name": e.name, **to_dict(e.stage)}
                           for e in self.stages]}


def parse_recipe(data: Any, source: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from plain data; every mistake is a ConfigError naming the entry."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with 'stages', got {type(data).__name__}")
    if "verify" in data:  # "verify" is the speaker decision (the verify stage); this checks reused outputs
        raise ConfigError(f"{source}: 'verify' is now 'reuse_check' (renamed; write reuse_check: "
                          f"{data['verify']})")
    unknown = sorted(set(data) - {"stages", "scoring", "plugins", "reuse_check"})
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; accepted: ['plugins', 'reuse_check', 'scoring', "
                          "'stages']")
    reuse_check = data.get("reuse_check", "stat")
    if reuse_check not in REUSE_CHECKS:
        raise ConfigError(f"{source}: reuse_check {reuse_check!r}; accepted: {list(REUSE_CHECKS)}")
    plugins = data.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(f"{source}: plugins must be a list of module names")
    for module in plugins:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"{source}: plugin module {module!r} cannot be imported ({exc})") from None
    types = stage_types()
    scoring = from_dict(ScoringConfig, data.get("scoring"), where=f"{source}: scoring")
    raw = data.get("stages")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source}: 'stages' must be a non-empty list")
    entries: list[StageEntry] = []
    for i, item in enumerate(raw):
        where = f"{source}: stages[{i}]"
        if not isinstance(item, dict) or "type" not in item:
            raise ConfigError(f"{where}: each stage is a mapping with a 'type'; types: {sorted(types)}")
        fields = dict(item)
        type_name = fields.pop("type")
        if type_name not in types:
            raise ConfigError(f"{where}: unknown stage type {type_name!r}; registered: {sorted(types)}")
        name = fields.pop("name", type_name)
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            raise ConfigError(f"{where}: name {name!r} must be a plain directory name")
        if any(e.name == name for e in entries):
            raise ConfigError(f"{where}: a stage named {name!r} comes earlier; give this one another name")
        stage = from_dict(types[type_name], fields, where=f"{where} ({name})")
        for field, ref in _uses(stage).items():
            earlier = next((e for e in entries if e.name == ref), None)
            if earlier is None:
                raise ConfigError(f"{where} ({name}).{field}: {ref!r} is not an earlier stage; earlier: "
                                  f"{[e.name for e in entries]}")
            _check_needs(f"{where} ({name}).{field}", type(stage), field, earlier, entries, types)
        entries.append(StageEntry(name, stage))
    return Recipe(entries, scoring, list(plugins), source, reuse_check)


def _check_needs(where: str, kind: type, field: str, earlier: StageEntry, entries: list[StageEntry],
                 types: dict[str, type]) -> None:
    """Refuse a field naming a stage that cannot give what it needs (a convert pointed at an evaluate)."""
    key = getattr(kind, "needs", {}).get(field)
    produces = getattr(type(earlier.stage), "produces", ())
    if key is None or not produces or key in produces:
        return
    fitting = sorted(t for t, cls in types.items() if key in getattr(cls, "produces", ()))
    raise ConfigError(f"{where}: {earlier.name!r} is a {earlier.stage.type_name} stage, which produces no "
                      f"{key!r} (it produces {list(produces)}); name a stage of type {fitting}")


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A recipe YAML file, or the name of a packaged one (``demo``)."""
    path = Path(name_or_path)
    if not path.is_file():
        packaged = Path(__file__).parent / "recipes" / f"{path.stem}.yaml"
        if not packaged.is_file() or path.suffix not in ("", ".yaml", ".yml") or len(path.parts) > 1:
            known = sorted(p.stem for p in packaged.parent.glob("*.yaml"))
            raise ConfigError(f"recipe {name_or_path}: not a file and not a packaged recipe; packaged: {known}")
        path = packaged
    return parse_recipe(read_yaml(path, "recipe"), str(path))


def _uses(stage: Any) -> dict[str, str]:
    uses = getattr(stage, "uses", None)
    return {k: v for k, v in (uses() if uses else {}).items() if v is not None}


# --------------------------------------------------------------------------- running


@dataclasses.dataclass
class StageContext:
    """What a running stage sees: its directory, the recipe, earlier stages' records, a cache."""

    workdir: Path
    name: str
    recipe: Recipe
    records: dict[str, dict[str, Any]]
    cache: dict[str, Any]

    @property
    def out(self) -> Path:
        return self.workdir / self.name

    @property
    def scoring(self) -> ScoringConfig:
        return self.recipe.scoring

    def output(self, stage: str, key: str) -> Path:
        """Output ``key`` of the earlier stage ``stage`` (from its record)."""
        record = self.records.get(stage)
        if record is None:
            raise ConfigError(f"stage {self.name}: stage {stage!r} has not run")
        outputs = record.get("outputs", {})
        if key not in outputs:
            raise ConfigError(f"stage {self.name}: stage {stage!r} ({record.get('type')}) has no output "
                              f"{key!r}; it has {sorted(outputs)}")
        return Path(outputs[key])

    def record(self, stage: str) -> dict[str, Any]:
        return self.records[stage]

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """Objects worth sharing between stages of one process (a loaded corpus, a model)."""
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


def hashed_names(stage: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` (keyed by the stage's field names) keyed as the fingerprint hashes them: a renamed field
    under its old name (the stage's ``renamed``), so a rename alone re-runs no finished stage."""
    old = {new: old for old, new in getattr(type(stage), "renamed", {}).items()}
    return {old.get(field, field): value for field, value in fields.items()}


def stage_fingerprint(entry: StageEntry, ctx: StageContext) -> str:
    stage = entry.stage
    upstream = hashed_names(stage, {field: ctx.records[ref]["digest"] for field, ref in _uses(stage).items()})
    extra = stage.fingerprint(ctx) if hasattr(stage, "fingerprint") else {}
    payload = {"type": stage.type_name, "config": hashed_names(stage, identity(stage)),
               "scoring": identity(ctx.scoring), "upstream": upstream, "extra": extra}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _valid_record(run: rundir.RunDir, fingerprint: str, reuse_check: str) -> tuple[dict[str, Any] | None, str]:
    """``(record, "")`` when the stage can be reused, else ``(None, why it re-runs)``."""
    if not run.record.is_file():
        return None, "not run yet" if not run.attempt.is_file() else "its last run did not finish"
    try:
        record = rundir.read_json(run.record)
    except ConfigError:
        return None, "its record is unreadable"
    if record.get("fingerprint") != fingerprint:
        return None, "its config or inputs changed"
    before = json.dumps(record, sort_keys=True)
    why = _changed_outputs(record, content=reuse_check == "content")
    if why:
        return None, why
    if json.dumps(record, sort_keys=True) != before:
        rundir.write_json(run.record, record)  # refreshed sizes and times: the next check is cheap again
    return record, ""


def _output_digest(outputs: dict[str, str]) -> str:
    """One digest of all of a stage's outputs: what the fingerprints of the stages using it hash."""
    digest = hashlib.sha256()
    for key in sorted(outputs):
        digest.update(f"{key}\0{rundir.tree_digest(outputs[key])}\0".encode())
    return digest.hexdigest()


def _output_files(outputs: dict[str, str], content: bool) -> dict[str, dict[str, str]]:
    """Per output: its :func:`~tfadvq.rundir.stat_digest`, :func:`~tfadvq.rundir.tree_digest`
    and, in content mode, the digest of every file's content."""
    files = {}
    for key, path in outputs.items():
        files[key] = {"stat": rundir.stat_digest(path), "digest": rundir.tree_digest(path)}
        if content:
            files[key]["content"] = rundir.tree_digest(path, content_limit=None)
    return files


def _changed_outputs(record: dict[str, Any], content: bool) -> str:
    """Why ``record``'s outputs no longer are what the stage wrote ("" when they are).

    Sizes and times first (no file read); a changed one is confirmed by the
    full digest, so a copied or touched but identical output is still reused.
    ``record["files"]`` is refreshed in place with what was found.
    """
    outputs = record.get("outputs", {})
    missing = [f"{key} ({path})" for key, path in outputs.items() if not Path(path).exists()]
    if missing:
        return f"its output {', '.join(missing)} is missing"
    files = record.get("files")
    if files is None:  # a record from before per-output digests: the combined digest decides
        if _output_digest(outputs) != record.get("digest"):
            return "its outputs changed since it finished"
        record["files"] = _output_files(outputs, content)
        return ""
    for key, path in outputs.items():
        saved = files.get(key, {})
        stat = rundir.stat_digest(path)
        if content:
            now = rundir.tree_digest(path, content_limit=None)
            if saved.get("content", now) != now:
                return f"its output {key} ({path}) changed since it finished (content digest)"
            saved["content"] = now
        if stat == saved.get("stat"):
            continue
        if rundir.tree_digest(path) != saved.get("digest"):
            return f"its output {key} ({path}) changed since it finished"
        saved["stat"] = stat
    return ""


def run_recipe(recipe: Recipe, workdir: str | Path, from_stage: str | None = None,
               to_stage: str | None = None, on_stage: Callable[[str, str], None] | None = None
               ) -> list[dict[str, Any]]:
    """Run ``recipe`` in ``workdir`` (module doc); return one summary row per stage.

    ``on_stage(name, why)`` is called before a stage runs, with the reason it is not reused.
    """
    workdir = Path(workdir)
    first = recipe.index(from_stage) if from_stage else 0
    last = recipe.index(to_stage) if to_stage else len(recipe.stages) - 1
    if first > last:
        raise ConfigError(f"--from {from_stage} comes after --to {to_stage}")
    rows: list[dict[str, Any]] = []
    records: dict[str, dict[str, Any]] = {}
    cache: dict[str, Any] = {}
    _check_workdir(workdir, recipe)
    with rundir.locked(workdir):
        rundir.write_json(workdir / rundir.RECIPE, recipe.to_dict())
        for i, entry in enumerate(recipe.stages[:last + 1]):
            ctx = StageContext(workdir, entry.name, recipe, records, cache)
            run = rundir.RunDir(ctx.out)
            fingerprint = stage_fingerprint(entry, ctx)
            forced = from_stage is not None and i >= first
            record, why = (None, f"--from {from_stage}") if forced else _valid_record(run, fingerprint,
                                                                                     recipe.reuse_check)
            if record is None and i < first:
                raise ConfigError(f"--from {from_stage}: the earlier stage {entry.name!r} has no up-to-date "
                                  f"result ({why}); run from it (or without --from)")
            reused = record is not None
            if not reused:
                if on_stage:
                    on_stage(entry.name, why)
                record = _run_stage(entry, ctx, run, fingerprint, recipe.reuse_check)
            records[entry.name] = record
            rows.append({"stage": entry.name, "type": entry.stage.type_name,
                         "seconds": round(record["seconds"], 1), "reused": reused,
                         "ran_because": why, "result": record.get("summary", "")})
    return rows


def _check_workdir(workdir: Path, recipe: Recipe) -> None:
    """Refuse a work directory holding files no recipe wrote (a stage's directory is emptied before
    it re-runs: a user's own folder named like a stage must never be)."""
    if not workdir.is_dir():
        return
    ours = {rundir.RECIPE, rundir.LOCK} | {e.name for e in recipe.stages}
    foreign = sorted(p.name for p in workdir.iterdir() if p.name not in ours and not p.name.startswith("."))
    if foreign and not (workdir / rundir.RECIPE).is_file():
        raise rundir.OutputError(f"--workdir {workdir}: holds files no recipe wrote ({', '.join(foreign[:5])}); "
                                 "choose an empty or new directory")
    for entry in recipe.stages:
        run = rundir.RunDir(workdir / entry.name)
        if run.path.exists() and not (run.path.is_dir() and (run.attempt.is_file() or run.record.is_file()
                                                             or not any(run.path.iterdir()))):
            raise rundir.OutputError(f"--workdir {workdir}: {run.path} was not written by a recipe stage (no "
                                     f"{rundir.ATTEMPT}) and stage {entry.name!r} would replace it; move it or "
                                     "choose another work directory")


def _run_stage(entry: StageEntry, ctx: StageContext, run: rundir.RunDir, fingerprint: str,
               reuse_check: str) -> dict[str, Any]:
    attempt = rundir.read_json(run.attempt) if run.attempt.is_file() else {}
    if run.path.exists() and attempt.get("fingerprint") != fingerprint:
        shutil.rmtree(run.path)  # left by another config (_check_workdir: by a stage): never mix two runs' files
    run.path.mkdir(parents=True, exist_ok=True)
    if run.record.exists():
        run.record.unlink()  # a record means "finished": not while re-running
    rundir.write_json(run.attempt, {"fingerprint": fingerprint})
    start = time.perf_counter()
    result = entry.stage.run(ctx)
    record = {"stage": entry.name, "type": entry.stage.type_name, "config": to_dict(entry.stage),
              "fingerprint": fingerprint, "inputs": {f: r for f, r in _uses(entry.stage).items()},
              "outputs": {k: str(v) for k, v in result.outputs.items()}, "metrics": result.metrics,
              "summary": result.summary, "seconds": time.perf_counter() - start,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    record["digest"] = _output_digest(record["outputs"])
    record["files"] = _output_files(record["outputs"], content=reuse_check == "content")
    rundir.write_json(run.record, record)
    return record


def override(recipe: Recipe, name: str, **values: Any) -> Recipe:
    """A copy of ``recipe`` with fields of stage ``name`` replaced (type-checked again)."""
    i = recipe.index(name)
    entry = recipe.stages[i]
    fields = {**to_dict(entry.stage), **{k: v for k, v in values.items() if v is not None}}
    stage = from_dict(type(entry.stage), fields, where=f"{recipe.source}: stage {name}")
    stages: Sequence[StageEntry] = [*recipe.stages[:i], StageEntry(name, stage), *recipe.stages[i + 1:]]
    return dataclasses.replace(recipe, stages=list(stages))


def demo_recipe(*, speakers: int | None = None, test_speakers: int | None = None, utts: int | None = None,
                corpus: str | None = None, epochs: int | None = None, batch_size: int | None = None,
                steps_per_epoch: int | None = None, bits: int | None = None,
                finetune_epochs: int | None = None, finetune_steps: int | None = None,
                frames: int | None = None, corpus_crops: int | None = None,
                real_sources: list[str] | None = None, real_clips: int | None = None, real_speech: bool = True,
                firmware: bool = False, core: str | None = None) -> Recipe:
    """The packaged demo recipe with the given values replaced (None keeps the recipe's): what
    ``tfadvq demo``'s flags build, and notebooks can too;
    ``real_speech=False`` leaves out the real-speech set and its evaluations; ``firmware=True`` adds the
    ``firmware_session`` stage (on ``core``) after ``device_verify``."""
    recipe = load_recipe("demo")
    recipe = override(recipe, "corpus", path=corpus, speakers=speakers, test_speakers=test_speakers, utts=utts)
    recipe = override(recipe, "train", epochs=epochs, batch_size=batch_size, steps_per_epoch=steps_per_epoch)
    recipe = override(recipe, "quantize", bits=bits)
    recipe = override(recipe, "finetune", epochs=finetune_epochs, steps_per_epoch=finetune_steps)
    recipe = override(recipe, "convert", corpus_crops=corpus_crops)
    if real_speech:
        recipe = override(recipe, "real_speech", sources=real_sources, max_clips=real_clips)
    else:
        real = {"real_speech"} | {e.name for e in recipe.stages if e.stage.uses().get("corpus") == "real_speech"}
        recipe = dataclasses.replace(recipe, stages=[e for e in recipe.stages if e.name not in real])
    if firmware:
        data = recipe.to_dict()
        at = recipe.index("device_verify") + 1
        session = {"type": "firmware_session", "model": "calibrate", "corpus": "corpus",
                   **({"core": core} if core else {})}
        data["stages"] = [*data["stages"][:at], session, *data["stages"][at:]]
        recipe = parse_recipe(data, recipe.source)
    elif core:
        raise ConfigError("--core: only with --firmware (the core the firmware session runs on)")
    if frames is not None:
        recipe = dataclasses.replace(recipe, scoring=dataclasses.replace(recipe.scoring, window_frames=frames,
                                                                         hop_frames=frames))
    return recipe
