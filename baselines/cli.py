"""`amp`: train and evaluate the baselines.

    amp train --task PermutationPower --method ia --size 16 --seed 0 [--steps N] [--resume]
    amp eval runs/PermutationPower-n16-ia-s0/checkpoint.pt

Every field of the method's config dataclass is an option (`--ema-horizon 50`,
`--curriculum none`, ...). A run writes runs/<name>/ (checkpoint.pt, log.csv, log.jsonl, tb/) and
its result file leaderboard/results/<name>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
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
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=f"(default: {default})")


def train_main(argv: list[str]) -> None:
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
    _add_config_options(parser, method.config)
    args = vars(parser.parse_args(argv))
    options = {k: args.pop(k) for k in ("method", "resume", "runs_dir", "results_dir", "quiet")}
    cfg = method.config(**args)
    from pathlib import Path

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

    state = torch.load(args.checkpoint, weights_only=False)
    method = get_method(state["method"])
    cfg = method.config(**state["config"])
    if "policy" in state:  # an SB3 agent (ppo, a2c): its own save file sits next to the checkpoint
        from pathlib import Path

        from baselines.rl import evaluate_saved_agent

        result = evaluate_saved_agent(cfg, Path(args.checkpoint).with_name("sb3_agent.zip"))
    else:
        task = cfg.make_task()
        model = build_model(cfg, task)
        model.load_state_dict(state["model"])
        result = EvalSet.build(task, cfg.eval_contexts, cfg.eval_questions_per_context).evaluate(model)
    print(json.dumps({"checkpoint": args.checkpoint, "step": state["step"], **result}, indent=1))
    return result


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

    commands = {"train": train_main, "eval": eval_main}
    if not argv or argv[0] not in commands:
        print(__doc__)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    commands[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
