"""Result files (`<results folder>/results/<run name>.json`): their schema, validation, and the
model-only weights file beside them (`<results folder>/weights/<run name>.safetensors`) that
`amp verify` re-evaluates. A results folder is `runs/` for what `amp train` writes and
`leaderboard/` for what `amp submit` publishes.

A result file is written by `Run.write_result` at the end of every run, validated first.
`load_result` refuses a file that is malformed, incomplete or out of range (a NaN, an accuracy
above 1, an unknown task, a config value of the wrong type, a path that leaves its folder) with
a message naming the file and what is wrong. Nothing a result file says is run or opened: the
weights file is found from the result file's own name, and a run's checkpoint is read only when
the user names it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, fields
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from baselines.common import EvalSet, TrainConfig, build_model, differing_settings
from baselines.errors import UsageError
from baselines.io import (
    LEGACY_WEIGHTS_SUFFIX,
    WEIGHTS_SUFFIX,
    atomic_write_text,
    load_checkpoint,
    load_weights,
    save_weights,
    sha256,
)
from baselines.model import Answerer, ModelConfig, naming_settings

# 2: paths relative and confined, numbers finite and in range, configs type-checked, weights as
# safetensors, `error` and `resumed_at` recorded
SCHEMA_VERSION = 2
STOP_REASONS = ("steps", "time", "interrupted", "error")
PARTIAL_STOP_REASONS = ("interrupted", "error")  # the run did not end on its budget

# field -> the type(s) it must have; every one is required
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "task": str,
    "size": int,
    "method": str,
    "seed": int,
    "config": dict,
    "commit": str,
    "machine": dict,
    "command": str,
    "partial": bool,
    "stop_reason": str,
    "steps": int,
    "wall_seconds": (int, float),
    "final": dict,
    "counts": dict,
    "steps_to": dict,
    "curve": list,
}
CURVE_ROW = {"step": int, "wall_seconds": (int, float), "accuracy": (int, float)}


METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SHA256 = re.compile(r"[0-9a-f]{64}")
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}\.json")
COUNT_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")


class ResultError(UsageError):
    """A result file that cannot be used: the message says which file and why."""


def _expect(ok: bool, path: Path | str, message: str) -> None:
    if not ok:
        raise ResultError(f"{path}: {message}")


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    # bool is an int in Python: refuse it where a number is expected, and vice versa
    if isinstance(value, bool) != (kind is bool):
        return False
    return isinstance(value, kind)


def validate_result(result: Any, path: Path | str = "<result>") -> dict[str, Any]:
    """Check a parsed result file; returns it unchanged or raises `ResultError`."""
    _expect(isinstance(result, dict), path, "not a JSON object")
    version = result.get("schema_version")
    _expect(
        version == SCHEMA_VERSION,
        path,
        f"schema_version {version!r}, this code reads version {SCHEMA_VERSION}",
    )
    missing = [k for k in REQUIRED if k not in result]
    _expect(not missing, path, f"incomplete: missing {', '.join(missing)}")
    for key, kind in REQUIRED.items():
        _expect(_is(result[key], kind), path, f"{key} should be {_type_name(kind)}, got {result[key]!r:.60}")
    _expect(result["stop_reason"] in STOP_REASONS, path, f"stop_reason must be one of {STOP_REASONS}")
    _expect(
        result["partial"] == (result["stop_reason"] in PARTIAL_STOP_REASONS),
        path,
        f"partial must be true exactly when stop_reason is one of {PARTIAL_STOP_REASONS}",
    )
    bad_number = _first_non_finite(result)
    _expect(bad_number is None, path, f"{bad_number} is not a finite number")
    for key in ("task", "size", "seed"):
        _expect(
            result["config"].get(key) == result[key],
            path,
            f"config.{key} ({result['config'].get(key)!r}) differs from {key} ({result[key]!r})",
        )
    _expect(
        bool(METHOD_NAME.fullmatch(result["method"])),
        path,
        f"method {result['method']!r} is not a method name",
    )
    try:
        method_config(result).check()
    except (ValueError, TypeError) as error:
        raise ResultError(f"{path}: config: {error}") from None
    for key in ("steps", "wall_seconds"):
        _expect(result[key] >= 0, path, f"{key} must be >= 0, got {result[key]!r}")
    final = result["final"]
    _expect(_is(final.get("accuracy"), (int, float)), path, "final.accuracy is missing or not a number")
    _expect(0 <= final["accuracy"] <= 1, path, f"final.accuracy {final['accuracy']} is not in [0, 1]")
    per = final.get("per_difficulty")
    _expect(isinstance(per, dict), path, "final.per_difficulty is missing")
    for d, row in per.items():
        ok = isinstance(row, dict) and _is(row.get("accuracy"), (int, float)) and _is(row.get("count"), int)
        _expect(ok, path, f"final.per_difficulty[{d}] needs accuracy and count")
        _expect(0 <= row["accuracy"] <= 1, path, f"final.per_difficulty[{d}].accuracy is not in [0, 1]")
        _expect(d.isdigit(), path, f"final.per_difficulty has a class {d!r} that is not a number")
    for key, n in result["counts"].items():
        _expect(bool(COUNT_KEY.fullmatch(key)), path, f"counts key {key!r} is not a name (a-z, 0-9, _)")
        _expect(_is(n, int) and n >= 0, path, f"counts.{key} must be a count (int >= 0), got {n!r}")
    for t in ("90", "99"):
        _expect(t in result["steps_to"], path, f"steps_to.{t} is missing (null if never reached)")
        hit = result["steps_to"][t]
        ok = hit is None or (
            isinstance(hit, dict) and _is(hit.get("step"), int) and _is(hit.get("wall_seconds"), (int, float))
        )
        _expect(ok, path, f"steps_to.{t} must be null or {{step, wall_seconds, ...}}")
    _expect(len(result["curve"]) > 0, path, "curve is empty: a run evaluates at least once")
    for i, row in enumerate(result["curve"]):
        for key, kind in CURVE_ROW.items():
            _expect(isinstance(row, dict) and _is(row.get(key), kind), path, f"curve[{i}].{key} missing")
        _expect(0 <= row["accuracy"] <= 1, path, f"curve[{i}].accuracy {row['accuracy']} is not in [0, 1]")
    steps = [row["step"] for row in result["curve"]]
    _expect(steps == sorted(steps), path, "curve steps are not increasing")
    checkpoint = result.get("checkpoint")  # informative only: never opened
    _expect(
        checkpoint is None or _relative_inside(checkpoint),
        path,
        "checkpoint must be a relative path inside the runs folder",
    )
    _expect(
        result.get("error") is None or isinstance(result["error"], str), path, "error must be null or text"
    )
    resumed = result.get("resumed_at", [])
    _expect(
        isinstance(resumed, list) and all(_is(s, int) for s in resumed),
        path,
        "resumed_at must be a list of steps",
    )
    weights = result.get("weights")  # optional: a run that failed, and files made by hand, have none
    if weights is not None:
        ok = isinstance(weights, dict) and isinstance(weights.get("path"), str)
        ok = ok and isinstance(weights.get("sha256"), str) and bool(SHA256.fullmatch(weights["sha256"]))
        _expect(ok, path, "weights must be null or {path, sha256}")
        stem = Path(path).stem
        allowed = [f"weights/{stem}{suffix}" for suffix in (WEIGHTS_SUFFIX, LEGACY_WEIGHTS_SUFFIX)]
        _expect(
            weights["path"] in allowed, path, f"weights.path must be {allowed[0]}, got {weights['path']!r}"
        )
    verified = result.get("verified")  # optional: written by `amp verify`
    ok = verified is None or (
        isinstance(verified, dict)
        and isinstance(verified.get("ok"), bool)
        and _is(verified.get("accuracy"), (int, float))
        and 0 <= verified["accuracy"] <= 1
        and (verified.get("weights_sha256") is None or isinstance(verified["weights_sha256"], str))
    )
    _expect(ok, path, "verified must be null or {ok, accuracy, ...} as `amp verify` writes it")
    return result


def _first_non_finite(value: Any, where: str = "") -> str | None:
    """The path of the first NaN or infinity in a parsed JSON value (JSON parsers accept them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "a value"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _first_non_finite(
            item, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip(".")
        )
        if found:
            return found
    return None


def _relative_inside(text: Any) -> bool:
    """A relative POSIX path that stays inside its folder (no `..`, no drive, no backslash)."""
    if not isinstance(text, str) or not text or "\\" in text or ":" in text:
        return False
    parts = PurePosixPath(text)
    return not parts.is_absolute() and ".." not in parts.parts


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def load_result(path: str | Path) -> dict[str, Any]:
    """Read and validate one result file."""
    path = Path(path)
    _expect(bool(FILE_NAME.fullmatch(path.name)), path, "a result file is named <letters, digits, _.->.json")
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultError(f"{path}: no such result file") from None
    except json.JSONDecodeError as e:
        raise ResultError(f"{path}: not valid JSON ({e})") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ResultError(f"{path}: cannot be read as JSON ({type(e).__name__})") from None
    try:
        return validate_result(result, path)
    except (TypeError, AttributeError, KeyError) as e:  # a shape no check above foresaw
        raise ResultError(f"{path}: malformed ({type(e).__name__}: {e})") from None


def load_results(results_dir: str | Path, skipped: list[ResultError] | None = None) -> list[dict[str, Any]]:
    """Every `*.json` under `results_dir`, validated, sorted by file name; each gets `_path`. A
    bad file raises `ResultError`, or, given a `skipped` list, is appended to it and left out."""
    out = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            result = load_result(path)
        except ResultError as error:
            if skipped is None:
                raise
            skipped.append(error)
            continue
        result["_path"] = path
        out.append(result)
    return out


def write_result_file(result: dict[str, Any], path: Path) -> None:
    """Write a result file the one way every writer uses (indent 1, trailing newline)."""
    clean = {k: v for k, v in result.items() if not k.startswith("_")}
    atomic_write_text(json.dumps(clean, indent=1, allow_nan=False) + "\n", path)


# -- weights: the model alone, small enough to commit ----------------------------------------------
def weights_path_for(result_path: Path) -> Path:
    """<folder>/results/<name>.json -> <folder>/weights/<name>.safetensors"""
    return result_path.parent.parent / "weights" / (result_path.stem + WEIGHTS_SUFFIX)


def recorded_weights_file(result: dict[str, Any], result_path: Path) -> Path | None:
    """The weights file a (validated) result records, in its results folder; None if none."""
    weights = result.get("weights")
    if not weights:
        return None
    return weights_path_for(result_path).with_suffix(Path(weights["path"]).suffix)


def is_verified(result: dict[str, Any]) -> bool:
    """The leaderboard's ✓: `amp verify` recorded a match for weights whose sha256 is the one the
    result names, and that file is here with that sha256. A file's own `"verified": {"ok": true}`
    without its weights counts for nothing (and the test suite re-verifies every ✓)."""
    verified, weights = result.get("verified") or {}, result.get("weights")
    if not (verified.get("ok") and weights and verified.get("weights_sha256") == weights["sha256"]):
        return False
    path = recorded_weights_file(result, result["_path"])
    return path is not None and path.is_file() and sha256(path) == weights["sha256"]


def train_config(result: dict[str, Any]) -> TrainConfig:
    """The shared part of a result's config: all that the model and the test set depend on."""
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in result["config"].items() if k in names})


def method_config(result: dict[str, Any]) -> TrainConfig:
    """The run's full config, as its method's dataclass (the shared part if the method is unknown
    here, e.g. a plugin that was not imported)."""
    from baselines.methods import METHODS

    method = METHODS.get(result["method"])
    if method is None:
        return train_config(result)
    names = {f.name for f in fields(method.config)}
    return method.config(**{k: v for k, v in result["config"].items() if k in names})


def recorded_config(result: dict[str, Any]) -> TrainConfig:
    """The config the run trained with: what the file records, each setting it predates at the
    value from before that setting existed (`BEFORE_ADDED`), any other at today's default."""
    from baselines.methods import METHODS

    method = METHODS.get(result["method"])
    config_class = method.config if method is not None else TrainConfig
    names = {f.name for f in fields(config_class)}
    config = {**config_class.BEFORE_ADDED, **result["config"]}
    config["model_overrides"] = {**config.get("model_overrides", {}), **model_settings_before_added(result)}
    return config_class(**{k: v for k, v in config.items() if k in names})


def model_settings_before_added(result: dict[str, Any]) -> dict[str, Any]:
    """The model settings a result file lacks because it was written before they existed, with
    the value its run trained with (`ModelConfig.BEFORE_ADDED`)."""
    recorded = result["config"].get("model_overrides", {})
    return {key: before for key, before in ModelConfig.BEFORE_ADDED.items() if key not in recorded}


def model_from_result(result: dict[str, Any], state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The run's trained artefact (X, or the method's own model), with `state` loaded."""
    from baselines.methods import METHODS

    method = METHODS.get(result["method"])
    cfg = method_config(result)
    if method is not None and method.rebuild is not None:
        model = method.rebuild(cfg)
    else:
        cfg.model_overrides.update(model_settings_before_added(result))
        model = build_model(cfg, cfg.make_task())
    model.load_state_dict(state)
    return model


def evaluate_result_model(result: dict[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """Score `model` the way the run was scored: on its fixed test set (same task, size and
    test-set shape), or with the method's own evaluation."""
    from baselines.methods import METHODS

    method = METHODS.get(result["method"])
    cfg = method_config(result)
    if method is not None and method.evaluate is not None:
        return method.evaluate(cfg, model)
    assert isinstance(model, Answerer)
    return EvalSet.build(cfg.make_task(), cfg.eval_contexts, cfg.eval_questions_per_context).evaluate(model)


def config_without_seed(result: dict[str, Any]) -> dict[str, Any]:
    """The settings a group of seeds shares (the budget included, bookkeeping excluded). A setting
    added to a method after the file was written is filled in with what the run trained with (its
    `BEFORE_ADDED` value, else its default, which then keeps the old behaviour); `model_overrides` stays as
    recorded (what it lacks tells an older model apart)."""
    from baselines.methods import METHODS

    ignore = {"seed", "eval_every", "checkpoint_every", "threads"}
    config = dict(result["config"])
    method = METHODS.get(result["method"])
    if method is not None:
        defaults = {**asdict(method.config()), **method.config.BEFORE_ADDED}
        defaults.pop("model_overrides")
        config = {**defaults, **config}
    if "model_overrides" in config:
        config["model_overrides"] = naming_settings(config["model_overrides"])
    if config.get("device") == "cpu":  # where the run ran: a GPU run is a row of its own
        ignore.add("device")
    return {k: v for k, v in config.items() if k not in ignore}


def setting_id(result: dict[str, Any]) -> str:
    """6 hex digits naming a method's settings across seeds: rows group seeds by it."""
    text = json.dumps({"method": result["method"], **config_without_seed(result)}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:6]


# -- verification ----------------------------------------------------------------------------------
def _model_state(result: dict[str, Any], path: Path, checkpoint: Path | None) -> tuple[dict, Path, str]:
    """The run's final weights: from `checkpoint` if the user names one (a trusted file), else
    from the weights file beside the result (found from the result's own name, never from a
    path it contains), whose sha256 must be the recorded one."""
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        if "model" not in state:
            raise ResultError(
                f"{checkpoint}: this checkpoint holds no model weights to verify (an RL agent's)"
            )
        # the result's own keys only: a file written before a setting existed lacks it
        theirs = state.get("config", {})
        differ = differing_settings(result["config"], {k: theirs.get(k) for k in result["config"]})
        if state.get("method") != result["method"] or differ:
            raise ResultError(
                f"{checkpoint} is not this run's checkpoint (method or config differ: {differ or 'method'})"
            )
        if state["step"] != result["steps"]:
            raise ResultError(
                f"{checkpoint} is at step {state['step']} but {path.name} records step {result['steps']} "
                "(a run cut inside a step keeps its previous checkpoint): nothing to verify against"
            )
        return state["model"], checkpoint, "checkpoint"
    weights_file = recorded_weights_file(result, path)
    if weights_file is None:
        raise ResultError(
            f"{path}: records no weights: nothing to verify (name the run's checkpoint with --checkpoint)"
        )
    if not weights_file.is_file():
        raise ResultError(f"{path}: its weights file {weights_file} is missing")
    if sha256(weights_file) != result["weights"]["sha256"]:
        raise ResultError(f"{weights_file}: sha256 differs from the one {path.name} records")
    return load_weights(weights_file), weights_file, "weights"


def verify(
    path: str | Path, checkpoint: str | Path | None = None, tolerance: float = 0.01, record: bool = True
) -> dict[str, Any]:
    """Reload a run's final model, re-evaluate it on the fixed test set and compare with the
    recorded final accuracy. With `record`, the outcome is written into the result file as
    `verified` with the sha256 of the weights it checked, and weights taken from a checkpoint are
    saved to the weights file the result then names."""
    path = Path(path)
    if not (math.isfinite(tolerance) and 0 <= tolerance <= 1):
        raise UsageError(f"tolerance must be a number in [0, 1], got {tolerance!r}")
    result = load_result(path)
    state, source, kind = _model_state(result, path, Path(checkpoint) if checkpoint else None)
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ResultError(f"{source}: the weights hold non-finite values (in {', '.join(bad[:3])})")
    try:
        model = model_from_result(result, state)
    except RuntimeError as error:  # load_state_dict: other shapes or keys than the run's model
        raise ResultError(
            f"{source}: the weights do not fit the run's model ({str(error).splitlines()[0]})"
        ) from None
    accuracy = evaluate_result_model(result, model)["accuracy"]
    recorded = result["final"]["accuracy"]
    ok = abs(accuracy - recorded) <= tolerance
    checked = result["weights"]["sha256"] if kind == "weights" else None
    if kind == "checkpoint" and record and ok:  # only weights that verify replace the recorded ones
        weights_file = weights_path_for(path)
        result["weights"] = {
            "path": weights_file.relative_to(path.parent.parent).as_posix(),
            "sha256": save_weights(model, weights_file),
        }
        checked = result["weights"]["sha256"]
    verified = {
        "ok": ok,
        "accuracy": accuracy,
        "recorded": recorded,
        "tolerance": tolerance,
        "weights_sha256": checked,
    }
    if record:
        result["verified"] = verified
        write_result_file(result, path)
    return {**verified, "source": str(source)}
