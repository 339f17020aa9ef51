"""How many steps IA takes to pass its first difficulty level, over seeds: a fast probe of the
stall where X learns permutation powering's k = 2 and stays wrong on k = 3 (see "route
initialisation" in baselines/model.py). Writes nothing; prints one line per seed.

    python -m baselines.first_level --seeds 0 1 2
    python -m baselines.first_level --seeds 0 1 2 3 4 \\
        --set 'model_overrides={"route_stay_prior": 3.0, "route_init_std": 0.1}'

For each seed: the step at which the curriculum left level 1 (or "not within N steps"), the running
agreement every 50 steps, and on 512 fresh questions of k = 2 and k = 3 the share X answers
right. Measured with one thread, IA at size 16 takes about 0.17 s a step here.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import numpy as np
import torch

from baselines import iterated_amplification
from baselines.grid import parse_settings
from baselines.methods import get_method
from baselines.trainer import Trainer


def accuracy_at_k(t: Trainer, k: int, contexts: int = 32, per_context: int = 16) -> float:
    """X's accuracy on fresh permutation-powering questions s^k(x), x drawn as usual."""
    task = t.task
    rng = np.random.default_rng(12345)
    ctx = task.generate(rng, contexts)
    idx = np.repeat(np.arange(contexts), per_context)
    x = task.sample_questions(ctx, rng, ctx_idx=idx)[:, -1]
    q = task.encode(np.full(len(idx), k), x)
    t.model.eval()
    with torch.no_grad():
        logp = t.model(torch.from_numpy(ctx.facts), torch.from_numpy(q.reshape(contexts, per_context, -1)))
    t.model.train()
    answers = logp.argmax(-1).reshape(-1).cpu().numpy()
    return float((answers == task.ground_truth(ctx, idx, q)[:, 0]).mean())


def probe(seed: int, size: int, steps: int, settings: dict[str, Any]) -> dict[str, Any]:
    cfg = get_method("ia").config(task="PermutationPower", size=size, seed=seed, threads=1, **settings)
    with tempfile.TemporaryDirectory() as runs:
        t = Trainer("ia", cfg, runs_dir=runs, results_dir=runs, quiet=True)
        iterated_amplification.setup(t)
        passed, trace = None, []
        for step in range(steps):
            t.step = step
            iterated_amplification.train_step(t)
            if step % 50 == 49:
                trace.append(round(t.curriculum.agreement, 2))
            if passed is None and t.curriculum.level > cfg.curriculum_start:
                passed = step + 1
                break
        return {
            "seed": seed,
            "passed_at": passed,
            "agreement": trace,
            "k2": accuracy_at_k(t, 2),
            "k3": accuracy_at_k(t, 3),
        }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m baselines.first_level", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=500, help="give up after this many steps")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="IA settings, JSON")
    args = parser.parse_args(argv)
    settings = parse_settings(args.set)
    rows = []
    for seed in args.seeds:
        row = probe(seed, args.size, args.steps, settings)
        rows.append(row)
        passed = f"at step {row['passed_at']}" if row["passed_at"] else f"not within {args.steps} steps"
        print(
            f"seed {seed}: first level passed {passed}; agreement every 50 steps {row['agreement']}; "
            f"X right on k = 2: {row['k2']:.0%}, k = 3: {row['k3']:.0%}",
            flush=True,
        )
    print(
        f"passed on {sum(r['passed_at'] is not None for r in rows)} of {len(rows)} seeds; settings {settings}"
    )
    return rows


if __name__ == "__main__":
    main()
