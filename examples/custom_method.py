"""A method of your own on the leaderboard, without editing the package.

The protocol (see `baselines/methods.py`): a method is a config dataclass extending `TrainConfig`
(its fields become `amp train` flags and are recorded in the result file) and a function
`train_step(t: Trainer) -> metrics` called until the budget (`--steps`, `--max-minutes`) runs
out. Each step it gets, through `t`:

* the batched engine `t.train_task()` (contexts, questions, H's decomposition, lookups, ground
  truth) and a seeded `t.rng`; or the Gymnasium env, `gym.make("Amp/<Task>-v0", ...)`;
* the answerer X to train, `t.model`, and `t.optimise(loss)`;
* `t.count(key, n)`: record every piece of information consumed (`ground_truth_labels`,
  `demonstrations`, `reward_queries`, `environment_steps`, ...): the leaderboard shows them.

What it hands back is `t.model`: the trainer evaluates it on the fixed held-out test set, writes
the result file and the weights, and `amp leaderboard` gives it a row.

This example, `few-labels`, is supervised learning that pays for only `labels_per_context`
ground-truth labels per context (and trains on those alone).

    python examples/custom_method.py --steps 300                 # train: runs/results/<name>.json
    python examples/custom_method.py --steps 300 --leaderboard-dir runs/leaderboard  # and a table
    amp train --import examples/custom_method.py --method few-labels --task UnionFind --size 8
    amp bench --import examples/custom_method.py --methods few-labels supervised --seeds 0 1
    amp submit runs/results/<name>.json                           # publish it on the leaderboard
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from baselines import leaderboard
from baselines.common import TrainConfig, draw_questions
from baselines.methods import METHODS, Method, register_method, train
from baselines.trainer import Trainer


@dataclass
class FewLabelsConfig(TrainConfig):
    labels_per_context: int = 4  # of the questions_per_context asked about each context
    curriculum: str = "none"


def train_step(t: Trainer) -> dict[str, float]:
    cfg, task = t.cfg, t.train_task()  # the batched engine at the curriculum's context size
    assert isinstance(cfg, FewLabelsConfig)
    k = min(cfg.labels_per_context, cfg.questions_per_context)
    ctx = task.generate(t.rng, cfg.batch_contexts)
    idx, q, _, _ = draw_questions(task, ctx, t.rng, k)
    labels = task.ground_truth(ctx, idx, q)[:, 0]
    t.count("ground_truth_labels", len(labels))  # the information this method consumed
    logp = t.model(torch.from_numpy(ctx.facts), torch.from_numpy(q.reshape(cfg.batch_contexts, k, -1)))
    loss = F.nll_loss(logp.reshape(len(labels), -1), torch.from_numpy(labels))
    t.optimise(loss)
    return {"loss": loss.item()}


if "few-labels" not in METHODS:  # imported twice (as a script and by `--import`): register once
    register_method("few-labels", Method(FewLabelsConfig, train_step))


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Train the few-labels method; optionally tabulate its runs.")
    parser.add_argument("--task", default="UnionFind")
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--tiny", action="store_true", help="a tiny model and batch (for the tests)")
    parser.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="results go to <runs-dir>/results"
    )
    parser.add_argument(
        "--leaderboard-dir",
        type=Path,
        default=None,
        help="also build a leaderboard of <runs-dir>/results here",
    )
    args = parser.parse_args(argv)
    tiny = dict(
        batch_contexts=4,
        questions_per_context=4,
        eval_every=max(1, args.steps // 2),
        eval_contexts=8,
        eval_questions_per_context=4,
        model_overrides={"d_model": 32, "n_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "d_ff": 64},
    )
    cfg = FewLabelsConfig(
        task=args.task, size=args.size, seed=args.seed, steps=args.steps, **(tiny if args.tiny else {})
    )
    trainer = train("few-labels", cfg, runs_dir=args.runs_dir, quiet=True)
    print(f"{trainer.run.name}: test accuracy {trainer.last_eval['accuracy']:.3f} -> {trainer.result_path}")
    if args.leaderboard_dir is not None:
        leaderboard.build(trainer.result_path.parent, args.leaderboard_dir)
        print(f"leaderboard of {trainer.result_path.parent}: {args.leaderboard_dir / 'README.md'}")
    return trainer.result_path


if __name__ == "__main__":
    main()
