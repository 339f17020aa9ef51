"""`amp`: train and evaluate the baselines, run grids, build and verify the leaderboard.

    amp train --task PermutationPower --method ia --size 16 --seed 0 [--steps N] [--resume]
    amp eval runs/PermutationPower-n16-ia-s0-<id>/checkpoint.pt
    amp bench --tasks UnionFind WildcardSearch --methods supervised ia --sizes 8 --seeds 0 1 2 \
        --max-minutes 3 [--jobs 2] [--backend ray]
    amp leaderboard [--check]
    amp verify leaderboard/results/<run name>.json

Every field of the method's config dataclass is an option (`--ema-horizon 50`,
`--curriculum none`, ...). A run writes runs/<name>/ (checkpoint.pt, log.csv, log.jsonl, tb/) and
its result file leaderboard/results/<name>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from baselines.methods import METHODS, get_method


def _add_config_options(parser: argparse.ArgumentParser, config: type) -> None:
    for f in dataclasses.fields(config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, dict):
            parser.add_argument(flag, type=json.loads, default=default, help=f"JSON (default {default})")
        elif isinstance(default, bool):
            parser.add_argument(flag, type=parse_bool, default=default, help=f"true or false ({default})")
        else:
            parser.add_argument(flag, type=type(default), default=default, help=f"(default: {default})")


def parse_bool(text: str) -> bool:
    """A boolean flag's value: true/false, yes/no, 1/0 (any case); anything else is refused."""
    value = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def import_plugins(plugins: Iterable[str]) -> None:
    """Import modules (`my_package.my_method`) or files (`examples/custom_method.py`) that
    register methods with `register_method`; each at most once per process."""
    for plugin in plugins:
        if plugin.endswith(".py"):
            path = Path(plugin).resolve()
            name = "amp_plugin_" + path.stem
            if name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ValueError(f"cannot import {plugin}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(plugin)


def _plugins_from(argv: list[str]) -> list[str]:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--import", dest="plugins", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    import_plugins(known.plugins)
    return known.plugins


IMPORT_HELP = "a module or .py file that registers a method (repeatable)"


def train_main(argv: list[str]) -> None:
    _plugins_from(argv)
    pre = argparse.ArgumentParser(prog="amp train", add_help=False)
    pre.add_argument("--method", default="ia", choices=sorted(METHODS))
    known, _ = pre.parse_known_args(argv)
    method = get_method(known.method)
    parser = argparse.ArgumentParser(prog="amp train", description="Train a baseline on one task.")
    parser.add_argument("--method", default="ia", choices=sorted(METHODS))
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--results-dir", default=None, help="default: leaderboard/results")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--import", dest="plugins", action="append", default=[], help=IMPORT_HELP)
    _add_config_options(parser, method.config)
    args = vars(parser.parse_args(argv))
    options = {k: args.pop(k) for k in ("method", "resume", "runs_dir", "results_dir", "quiet", "plugins")}
    cfg = method.config(**args)
    from baselines.methods import train

    trainer = train(
        options["method"],
        cfg,
        runs_dir=options["runs_dir"],
        results_dir=Path(options["results_dir"]) if options["results_dir"] else None,
        resume=options["resume"],
        quiet=options["quiet"],
        on_start=_stop_cleanly_on_signals,
    )
    final = trainer.last_eval
    print(f"{trainer.run.name}: test accuracy {final['accuracy']:.4f} after {trainer.step} steps")
    print(f"result: {trainer.result_path}")


def eval_main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="amp eval", description="Re-evaluate a checkpoint on the fixed test set."
    )
    parser.add_argument("checkpoint")
    args = parser.parse_args(argv)
    from baselines.common import EvalSet, build_model

    state = torch.load(args.checkpoint, weights_only=False, map_location="cpu")
    method = get_method(state["method"])
    cfg = method.config(**state["config"])
    if "agent" in state:  # an SB3 agent (ppo, a2c), saved whole inside the checkpoint
        import io

        from baselines.rl import evaluate_saved_agent

        result = evaluate_saved_agent(cfg, io.BytesIO(state["agent"]))
    else:
        task = cfg.make_task()
        model = build_model(cfg, task)
        model.load_state_dict(state["model"])
        result = EvalSet.build(task, cfg.eval_contexts, cfg.eval_questions_per_context).evaluate(model)
    print(json.dumps({"checkpoint": args.checkpoint, "step": state["step"], **result}, indent=1))
    return result


def bench_main(argv: list[str]) -> list[dict[str, Any]]:
    plugins = _plugins_from(argv)
    from amp_envs.tasks import BENCHMARK_TASKS, TASKS
    from baselines import grid

    parser = argparse.ArgumentParser(
        prog="amp bench",
        description="Train a grid of runs (tasks x methods x sizes x seeds); runs with a complete result "
        "file are skipped and interrupted ones resumed, so the same command finishes what is left.",
    )
    parser.add_argument("--tasks", nargs="+", default=list(BENCHMARK_TASKS), choices=sorted(TASKS))
    parser.add_argument("--methods", nargs="+", default=["supervised", "ia"], choices=sorted(METHODS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[8])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-minutes", type=float, default=3.0, help="time budget per run (default 3)")
    parser.add_argument("--steps", type=int, default=100_000, help="step budget per run (default 100000)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config values, JSON")
    parser.add_argument("--jobs", type=int, default=1, help="local runs at once (default 1)")
    parser.add_argument("--backend", choices=["local", "ray"], default="local")
    parser.add_argument("--ray-address", default=None, help="a Ray cluster (default: start a local one)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray CPUs reserved per run")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--results-dir", default=None, help="default: leaderboard/results")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and what would happen")
    parser.add_argument("--import", dest="plugins", action="append", default=[], help=IMPORT_HELP)
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
    if args.dry_run:
        for spec in specs:
            print(f"{spec.status():6s} {spec.name}")
        return []
    out = grid.run_grid(specs, args.backend, args.jobs, args.ray_address, args.cpus_per_run)
    failed = [s for s in out if not s["ok"]]
    if failed:
        raise SystemExit(
            f"{len(failed)} run(s) failed: " + "; ".join(f"{s['name']}: {s['error']}" for s in failed)
        )
    return out


def leaderboard_main(argv: list[str]) -> None:
    from baselines import leaderboard as lb

    parser = argparse.ArgumentParser(
        prog="amp leaderboard",
        description="Build leaderboard/README.md, leaderboard/plots/ and the project README's leaderboard "
        "section from the result files alone.",
    )
    parser.add_argument("--results-dir", type=Path, default=lb.LEADERBOARD_DIR / "results")
    parser.add_argument("--out", type=Path, default=lb.LEADERBOARD_DIR, help="default: leaderboard/")
    parser.add_argument(
        "--project-readme", type=Path, default=None, help="default: README.md with --out default"
    )
    parser.add_argument("--no-project-readme", action="store_true")
    parser.add_argument(
        "--check", action="store_true", help="only check that the committed files are up to date"
    )
    args = parser.parse_args(argv)
    readme = args.project_readme
    if readme is None and not args.no_project_readme and args.out.resolve() == lb.LEADERBOARD_DIR:
        readme = lb.PROJECT_README
    if args.check:
        problems = lb.check(args.results_dir, args.out, readme)
        if problems:
            raise SystemExit(
                "the leaderboard is out of date (run `amp leaderboard`):\n" + "\n".join(problems)
            )
        print("the leaderboard is up to date")
        return
    for path in lb.build(args.results_dir, args.out, readme):
        print(f"wrote {path}")


def verify_main(argv: list[str]) -> list[dict[str, Any]]:
    from baselines.results import ResultError, verify

    parser = argparse.ArgumentParser(
        prog="amp verify",
        description="Reload each run's final weights, re-evaluate them on the fixed test set and confirm the "
        "recorded final accuracy within --tolerance; the outcome is written into the result file "
        "(`verified`), which the leaderboard marks.",
    )
    parser.add_argument("results", nargs="+", type=Path, help="result files (leaderboard/results/*.json)")
    parser.add_argument("--checkpoint", default=None, help="take the model from this checkpoint instead")
    parser.add_argument("--tolerance", type=float, default=0.01, help="default 0.01 (1 point)")
    parser.add_argument("--no-record", action="store_true", help="do not write the outcome into the file")
    args = parser.parse_args(argv)
    outcomes, failed = [], 0
    for path in args.results:
        try:
            v = verify(path, args.checkpoint, args.tolerance, record=not args.no_record)
        except ResultError as e:
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


def _stop_cleanly_on_signals(trainer: object) -> None:
    """Ctrl-C or SIGTERM: finish the current step, checkpoint, write a partial result. A second
    signal interrupts at once (the last checkpoint is kept)."""

    def handler(signum: int, frame: object) -> None:
        trainer.request_stop()  # type: ignore[attr-defined]
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv

    commands = {
        "train": train_main,
        "eval": eval_main,
        "bench": bench_main,
        "leaderboard": leaderboard_main,
        "verify": verify_main,
    }
    if not argv or argv[0] not in commands:
        print(__doc__)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    commands[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
