"""Result files (`leaderboard/results/<run name>.json`): their schema, validation, and the small
model-only weights file (`leaderboard/weights/<run name>.pt`) that `amp verify` re-evaluates.

A result file is written by `Run.write_result` at the end of every run. `load_result` refuses a
file that is malformed or incomplete with a message naming the file and what is wrong, so the
leaderboard is never built from a broken file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from baselines.common import EvalSet, TrainConfig, build_model
from baselines.model import Answerer, ModelConfig, naming_settings

SCHEMA_VERSION = 1
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


class ResultError(ValueError):
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
    for key in ("task", "size", "seed"):
        _expect(
            result["config"].get(key) == result[key],
            path,
            f"config.{key} ({result['config'].get(key)!r}) differs from {key} ({result[key]!r})",
        )
    final = result["final"]
    _expect(_is(final.get("accuracy"), (int, float)), path, "final.accuracy is missing or not a number")
    _expect(0 <= final["accuracy"] <= 1, path, f"final.accuracy {final['accuracy']} is not in [0, 1]")
    per = final.get("per_difficulty")
    _expect(isinstance(per, dict), path, "final.per_difficulty is missing")
    for d, row in per.items():
        ok = isinstance(row, dict) and _is(row.get("accuracy"), (int, float)) and _is(row.get("count"), int)
        _expect(ok, path, f"final.per_difficulty[{d}] needs accuracy and count")
    for key, n in result["counts"].items():
        _expect(_is(n, int) and n >= 0, path, f"counts.{key} must be a count (int >= 0), got {n!r}")
    for t in ("90", "99"):
        _expect(t in result["steps_to"], path, f"steps_to.{t} is missing (null if never reached)")
        hit = result["steps_to"][t]
        _expect(hit is None or ("step" in hit and "wall_seconds" in hit), path, f"steps_to.{t} malformed")
    _expect(len(result["curve"]) > 0, path, "curve is empty: a run evaluates at least once")
    for i, row in enumerate(result["curve"]):
        for key, kind in CURVE_ROW.items():
            _expect(isinstance(row, dict) and _is(row.get(key), kind), path, f"curve[{i}].{key} missing")
    steps = [row["step"] for row in result["curve"]]
    _expect(steps == sorted(steps), path, "curve steps are not increasing")
    weights = result.get("weights")  # optional: older files and hand-made ones have none
    ok = weights is None or (
        isinstance(weights, dict) and all(isinstance(weights.get(k), str) for k in ("path", "sha256"))
    )
    _expect(ok, path, "weights must be null or {path, sha256}")
    verified = result.get("verified")  # optional: written by `amp verify`
    ok = verified is None or (isinstance(verified, dict) and isinstance(verified.get("ok"), bool))
    _expect(ok, path, "verified must be null or {ok, accuracy, ...} as `amp verify` writes it")
    return result


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def load_result(path: str | Path) -> dict[str, Any]:
    """Read and validate one result file."""
    path = Path(path)
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultError(f"{path}: no such result file") from None
    except json.JSONDecodeError as e:
        raise ResultError(f"{path}: not valid JSON ({e})") from None
    return validate_result(result, path)


def load_results(results_dir: str | Path) -> list[dict[str, Any]]:
    """Every `*.json` under `results_dir`, validated, sorted by file name; each gets `_path`."""
    out = []
    for path in sorted(Path(results_dir).glob("*.json")):
        result = load_result(path)
        result["_path"] = path
        out.append(result)
    return out


def write_result_file(result: dict[str, Any], path: Path) -> None:
    """Write a result file the one way every writer uses (indent 1, trailing newline)."""
    from baselines.run import atomic_write_text

    clean = {k: v for k, v in result.items() if not k.startswith("_")}
    atomic_write_text(json.dumps(clean, indent=1) + "\n", path)


# -- weights: the model alone, small enough to commit ----------------------------------------------
def weights_path_for(result_path: Path) -> Path:
    """leaderboard/results/<name>.json -> leaderboard/weights/<name>.pt"""
    return result_path.parent.parent / "weights" / (result_path.stem + ".pt")


def save_weights(model: torch.nn.Module, path: Path) -> str:
    """Save the trained model's (X's, or an RL policy's) float32 parameters alone (no optimiser
    or replay buffer); returns the sha256."""
    from baselines.run import atomic_save

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    atomic_save({"format": 1, "model": state}, path)
    return sha256(path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    """The run's final weights: `checkpoint` if given, else the weights file the result names,
    else the run folder's checkpoint (then the weights file is written from it, to commit)."""
    weights = result.get("weights")
    weights_file = path.parent.parent / weights["path"] if weights else weights_path_for(path)
    if checkpoint is None and weights_file.exists():
        if weights and sha256(weights_file) != weights["sha256"]:
            raise ResultError(f"{weights_file}: sha256 differs from the one {path.name} records")
        state = torch.load(weights_file, weights_only=True, map_location="cpu")
        return state["model"], weights_file, "weights"
    recorded = str(result.get("checkpoint", ""))  # relative to where `amp train` ran, or the repo
    candidates = [Path(checkpoint)] if checkpoint else [Path(recorded), path.parent.parent.parent / recorded]
    for ckpt in candidates:
        if ckpt.is_file():
            state = torch.load(ckpt, weights_only=False, map_location="cpu")
            if state["step"] != result["steps"]:
                raise ResultError(
                    f"{ckpt} is at step {state['step']} but {path.name} records step {result['steps']} "
                    "(a run cut inside a step keeps its previous checkpoint): nothing to verify against"
                )
            return state["model"], ckpt, "checkpoint"
    raise ResultError(
        f"{path}: no weights to verify: neither {weights_file} nor the run's checkpoint "
        f"({result.get('checkpoint')}) exists (weights files are written by runs from this version on)"
    )


def verify(
    path: str | Path, checkpoint: str | Path | None = None, tolerance: float = 0.01, record: bool = True
) -> dict[str, Any]:
    """Reload a run's final model, re-evaluate it on the fixed test set and compare with the
    recorded final accuracy. With `record`, the outcome is written into the result file as
    `verified` (the leaderboard marks those rows), and weights taken from a checkpoint are saved
    to the weights file the result then names."""
    path = Path(path)
    result = load_result(path)
    state, source, kind = _model_state(result, path, Path(checkpoint) if checkpoint else None)
    model = model_from_result(result, state)
    accuracy = evaluate_result_model(result, model)["accuracy"]
    recorded = result["final"]["accuracy"]
    if kind == "checkpoint" and record:
        weights_file = weights_path_for(path)
        result["weights"] = {
            "path": str(weights_file.relative_to(path.parent.parent)),
            "sha256": save_weights(model, weights_file),
        }
    verified = {
        "ok": abs(accuracy - recorded) <= tolerance,
        "accuracy": accuracy,
        "recorded": recorded,
        "tolerance": tolerance,
        "weights_sha256": result["weights"]["sha256"] if result.get("weights") else None,
    }
    if record:
        result["verified"] = verified
        write_result_file(result, path)
    return {**verified, "source": str(source)}
