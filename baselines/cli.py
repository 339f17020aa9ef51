"""`amp`: train and evaluate the baselines, run grids, publish, build and verify the leaderboard.

    amp train --task PermutationPower --method ia --size 16 --seed 0 [--steps N] [--resume | --overwrite]
    amp eval runs/PermutationPower-n16-ia-s0-<id>/checkpoint.pt
    amp bench --tasks UnionFind WildcardSearch --methods supervised ia --sizes 8 --seeds 0 1 2 \\
        --max-minutes 3 [--jobs 2] [--backend ray]
    amp reproduce leaderboard/results/<run name>.json ... --runs-dir runs/reproduce
    amp submit runs/results/<run name>.json
    amp leaderboard [--check] [--project-readme README.md]
    amp verify leaderboard/results/<run name>.json

Every field of the method's config dataclass is an option (`--ema-horizon 50`,
`--curriculum none`, ...). A run writes runs/<name>/ (checkpoint.pt, log.csv, log.jsonl, tb/), its
result file runs/results/<name>.json and its weights runs/weights/<name>.safetensors; nothing
goes into leaderboard/ until `amp submit` copies a result there.

A user error (a bad option or value, a file that is not what it should be) prints one line,
`amp: error: ...`, and exits with status 2; a run that cannot go on (non-finite loss, corrupt
checkpoint, a run held by another process) exits with status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

from baselines.errors import RunError, UsageError
from baselines.methods import METHODS, get_method, import_plugins


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad option is a `UsageError` (one line from `main`, status 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def json_object(text: str) -> dict[str, Any]:
    """A JSON object given on the command line (`--model-overrides '{"d_model": 64}'`)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({error.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def parse_bool(text: str) -> bool:
    """A boolean flag's value: true/false, yes/no, 1/0 (any case); anything else is refused."""
    value = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def _add_config_options(parser: argparse.ArgumentParser, config: type) -> None:
    for f in dataclasses.fields(config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, dict):
            parser.add_argument(flag, type=json_object, default=default, help=f"JSON (default {default})")
        elif isinstance(default, bool):
            parser.add_argument(flag, type=parse_bool, default=default, help=f"true or false ({default})")
        else:
            parser.add_argument(flag, type=type(default), default=default, help=f"(default: {default})")


def _plugins_from(argv: list[str]) -> list[str]:
    pre = ArgumentParser(prog="amp", add_help=False)
    pre.add_argument("--import", dest="plugins", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    import_plugins(known.plugins)
    return known.plugins


IMPORT_HELP = "a module or .py file that registers a method (repeatable)"


def train_main(argv: list[str]) -> None:
    _plugins_from(argv)
    pre = ArgumentParser(prog="amp train", add_help=False)
    pre.add_argument("--method", default="ia", choices=sorted(METHODS))
    known, _ = pre.parse_known_args(argv)
    method = get_method(known.method)
    parser = ArgumentParser(prog="amp train", description="Train a baseline on one task.")
    parser.add_argument("--method", default="ia", choices=sorted(METHODS), help="(default: ia)")
    parser.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over, replacing the run's checkpoint, result and weights",
    )
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--results-dir", default=None, help="default: <runs-dir>/results")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--import", dest="plugins", action="append", default=[], help=IMPORT_HELP)
    _add_config_options(parser, method.config)
    args = vars(parser.parse_args(argv))
    options = {
        k: args.pop(k)
        for k in ("method", "resume", "overwrite", "runs_dir", "results_dir", "quiet", "plugins")
    }
    cfg = method.config(**args)
    try:
        cfg.validate()
    except ValueError as error:
        raise UsageError(str(error)) from None
    from baselines.methods import train

    trainer = train(
        options["method"],
        cfg,
        runs_dir=options["runs_dir"],
        results_dir=options["results_dir"],
        resume=options["resume"],
        overwrite=options["overwrite"],
        quiet=options["quiet"],
        stop_on_signals=True,
    )
    final = trainer.last_eval
    print(f"{trainer.run.name}: test accuracy {final['accuracy']:.4f} after {trainer.step} steps")
    print(f"result: {trainer.result_path}")


def eval_main(argv: list[str]) -> dict[str, Any]:
    parser = ArgumentParser(prog="amp eval", description="Re-evaluate a checkpoint on the fixed test set.")
    parser.add_argument("checkpoint", type=Path)
    args = parser.parse_args(argv)
    from baselines.common import EvalSet, build_model
    from baselines.io import load_checkpoint

    state = load_checkpoint(args.checkpoint)
    if not {"method", "config", "step"} <= state.keys() or not isinstance(state["config"], dict):
        raise RunError(f"checkpoint {args.checkpoint} does not hold a training state of amp-envs")
    method = get_method(state["method"])
    cfg = method.config(**state["config"])
    if "agent" in state:  # an SB3 agent (ppo, a2c), saved whole inside the checkpoint (a trusted file)
        import io

        from baselines.rl import evaluate_saved_agent

        result = evaluate_saved_agent(cfg, io.BytesIO(state["agent"]))
    else:
        task = cfg.make_task()
        model = build_model(cfg, task)
        model.load_state_dict(state["model"])
        result = EvalSet.build(task, cfg.eval_contexts, cfg.eval_questions_per_context).evaluate(model)
    print(json.dumps({"checkpoint": str(args.checkpoint), "step": state["step"], **result}, indent=1))
    return result


def _add_grid_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=1, help="local runs at once (default 1)")
    parser.add_argument("--backend", choices=["local", "ray"], default="local")
    parser.add_argument("--ray-address", default=None, help="a Ray cluster (default: start a local one)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray CPUs reserved per run")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and what would happen")
    parser.add_argument("--import", dest="plugins", action="append", default=[], help=IMPORT_HELP)


def _run_specs(specs: list, args: argparse.Namespace) -> list[dict[str, Any]]:
    from baselines import grid

    if args.jobs < 1 or args.cpus_per_run <= 0:
        raise UsageError("--jobs must be >= 1 and --cpus-per-run > 0")
    if args.dry_run:
        for spec in specs:
            print(f"{spec.status():6s} {spec.name}")
        return []
    out = grid.run_grid(specs, args.backend, args.jobs, args.ray_address, args.cpus_per_run)
    failed = [s for s in out if not s["ok"]]
    if failed:
        raise RunError(
            f"{len(failed)} run(s) failed: " + "; ".join(f"{s['name']}: {s['error']}" for s in failed)
        )
    return out


def bench_main(argv: list[str]) -> list[dict[str, Any]]:
    plugins = _plugins_from(argv)
    from amp_envs.tasks import BENCHMARK_TASKS, TASKS
    from baselines import grid

    parser = ArgumentParser(
        prog="amp bench",
        description="Train a grid of runs (tasks x methods x sizes x seeds) into --runs-dir; runs with a "
        "complete result file are skipped and interrupted ones resumed, so the same command finishes "
        "what is left.",
    )
    parser.add_argument("--tasks", nargs="+", default=list(BENCHMARK_TASKS), choices=sorted(TASKS))
    parser.add_argument("--methods", nargs="+", default=["supervised", "ia"], choices=sorted(METHODS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[8])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-minutes", type=float, default=3.0, help="time budget per run (default 3)")
    parser.add_argument("--steps", type=int, default=100_000, help="step budget per run (default 100000)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config values, JSON")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--results-dir", default=None, help="default: <runs-dir>/results")
    _add_grid_backend_options(parser)
    args = parser.parse_args(argv)
    settings = {"max_minutes": args.max_minutes, "steps": args.steps, **grid.parse_settings(args.set)}
    specs = grid.grid(
        args.tasks,
        args.methods,
        args.sizes,
        args.seeds,
        settings,
        runs_dir=Path(args.runs_dir).resolve(),
        results_dir=Path(args.results_dir).resolve() if args.results_dir else None,
        plugins=plugins,
    )
    return _run_specs(specs, args)


def reproduce_main(argv: list[str]) -> list[dict[str, Any]]:
    plugins = _plugins_from(argv)
    from baselines import grid
    from baselines.results import load_result

    parser = ArgumentParser(
        prog="amp reproduce",
        description="Retrain the runs that result files record (their exact configs) into a fresh runs "
        "folder, then compare each new result with the recorded one. Interrupted, the same command resumes.",
    )
    parser.add_argument("results", nargs="+", type=Path, help="result files, e.g. leaderboard/results/*.json")
    parser.add_argument("--runs-dir", required=True, help="a folder of its own for the new runs")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="change a setting (threads=1)"
    )
    _add_grid_backend_options(parser)
    args = parser.parse_args(argv)
    from baselines.leaderboard import LEADERBOARD_DIR

    runs_dir = Path(args.runs_dir).resolve()
    for board in {(Path.cwd() / "leaderboard").resolve(), LEADERBOARD_DIR}:
        if board in (runs_dir, *runs_dir.parents):
            raise UsageError(
                "--runs-dir must not be inside leaderboard/: the new runs go to a folder of their own"
            )
    changes = grid.parse_settings(args.set)
    recorded = [load_result(path) for path in args.results]
    specs = [grid.spec_from_result(r, runs_dir, changes, tuple(plugins)) for r in recorded]
    for path, spec in zip(args.results, specs, strict=True):
        if spec.result_path.resolve() == path.resolve():
            raise UsageError(f"{path} is in --runs-dir's results: give reproduce a folder of its own")
    out = _run_specs(specs, args)
    if not args.dry_run:
        print(grid.compare_table(recorded, args.results, specs))
    return out


def submit_main(argv: list[str]) -> list[Path]:
    from baselines.results import (
        ResultError,
        load_result,
        recorded_weights_file,
        verify,
        weights_path_for,
        write_result_file,
    )

    parser = ArgumentParser(
        prog="amp submit",
        description="Publish result files: check each, verify it (re-evaluate its weights), then copy it "
        "and its weights into the leaderboard folder. Then run `amp leaderboard`.",
    )
    parser.add_argument("results", nargs="+", type=Path, help="result files, e.g. runs/results/<name>.json")
    parser.add_argument("--leaderboard-dir", type=Path, default=Path("leaderboard"))
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a published result of the same name"
    )
    args = parser.parse_args(argv)
    written = []
    for path in args.results:
        result = load_result(path)
        if result["partial"]:
            raise ResultError(
                f"{path}: a partial result ({result['stop_reason']}): resume the run to finish it first"
            )
        target = args.leaderboard_dir / "results" / path.name
        if target.resolve() == path.resolve():
            raise UsageError(f"{path} is already in {args.leaderboard_dir}")
        if target.exists() and not args.overwrite:
            raise UsageError(f"{target} exists: --overwrite to replace a published result")
        # verified where it is, before anything is copied: a failure leaves the leaderboard as it was
        outcome = verify(path, record=False)
        if not outcome["ok"]:
            raise RunError(
                f"{path}: its weights re-evaluate to {outcome['accuracy']:.4f}, it records "
                f"{outcome['recorded']:.4f}: not published"
            )
        weights = recorded_weights_file(result, path)
        assert weights is not None  # verify found it
        target_weights = weights_path_for(target).with_suffix(weights.suffix)
        target_weights.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, target_weights)
        result["verified"] = {k: v for k, v in outcome.items() if k != "source"}
        write_result_file(result, target)
        print(f"published {target} (verified: {outcome['accuracy']:.4f})")
        written.append(target)
    print("now run `amp leaderboard --project-readme README.md` and commit the files")
    return written


def leaderboard_main(argv: list[str]) -> None:
    from baselines import leaderboard as lb

    parser = ArgumentParser(
        prog="amp leaderboard",
        description="Build <out>/README.md and <out>/plots/ from the result files alone (bad files are "
        "reported and skipped); with --project-readme, also that file's leaderboard section.",
    )
    parser.add_argument("--results-dir", type=Path, default=lb.LEADERBOARD_DIR / "results")
    parser.add_argument("--out", type=Path, default=lb.LEADERBOARD_DIR, help="default: leaderboard/")
    parser.add_argument(
        "--project-readme", type=Path, default=None, help="a README with leaderboard markers to update too"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check that the files are up to date (and every file is valid)",
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = lb.check(args.results_dir, args.out, args.project_readme)
        if problems:
            raise RunError("the leaderboard is out of date (run `amp leaderboard`):\n" + "\n".join(problems))
        print("the leaderboard is up to date")
        return
    skipped: list = []
    for path in lb.build(args.results_dir, args.out, args.project_readme, skipped=skipped):
        print(f"wrote {path}")
    for error in skipped:
        print(f"skipped {error}", file=sys.stderr)


def verify_main(argv: list[str]) -> list[dict[str, Any]]:
    from baselines.results import verify

    parser = ArgumentParser(
        prog="amp verify",
        description="Reload each run's final weights (the weights file beside its result), re-evaluate them "
        "on the fixed test set and confirm the recorded final accuracy within --tolerance; the outcome is "
        "written into the result file (`verified`, with the weights' sha256), which the leaderboard marks.",
    )
    parser.add_argument("results", nargs="+", type=Path, help="result files (leaderboard/results/*.json)")
    parser.add_argument(
        "--checkpoint", default=None, help="take the model from this checkpoint instead (a file you trust)"
    )
    parser.add_argument("--tolerance", type=float, default=0.01, help="default 0.01 (1 point)")
    parser.add_argument("--no-record", action="store_true", help="do not write the outcome into the file")
    args = parser.parse_args(argv)
    outcomes, failed = [], 0
    for path in args.results:
        try:
            v = verify(path, args.checkpoint, args.tolerance, record=not args.no_record)
        except (UsageError, RunError) as e:
            print(f"FAILED  {e}")
            failed += 1
            continue
        word = "OK" if v["ok"] else "FAILED"
        failed += not v["ok"]
        print(
            f"{word:7s} {path.name}: re-evaluated {v['accuracy']:.4f}, recorded {v['recorded']:.4f} "
            f"(tolerance {v['tolerance']}; model from {v['source']})"
        )
        outcomes.append(v)
    if failed:
        raise SystemExit(1)
    return outcomes


COMMANDS = {
    "train": train_main,
    "eval": eval_main,
    "bench": bench_main,
    "reproduce": reproduce_main,
    "submit": submit_main,
    "leaderboard": leaderboard_main,
    "verify": verify_main,
}


def _fail(message: str, status: int) -> NoReturn:
    print(f"amp: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if argv else 2)
    if argv[0] == "--version":
        from amp_envs import __version__

        print(f"amp {__version__}")
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        _fail(f"unknown command {command!r}{hint}; choose from {', '.join(COMMANDS)}", 2)
    try:
        COMMANDS[command](rest)
    except UsageError as error:
        _fail(str(error), 2)
    except RunError as error:
        _fail(str(error), 1)


if __name__ == "__main__":
    main()
