"""Issue 3's bar A, measured: supervised learning and IA with the scripted H on permutation
powering at size 8, each trained for a fixed, seeded step budget with 2 threads, and scored on the
fixed test set against the bar (over 90%; the budget must run in under 2 minutes on this project's
2-core machine).

    python -m baselines.bar_a --seeds 0 1 2      # one line per method and seed, then a summary

The configurations are `BAR_A` (the bar's test in the default suite trains the same ones, on
one seed each); the step budget is what makes a run reproducible, the wall time is measured
alongside. Run it alone: other work on the CPU changes the seconds, not the accuracies.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from baselines.common import TrainConfig
from baselines.iterated_amplification import IAConfig
from baselines.methods import train
from baselines.supervised import SupervisedConfig

BAR = 0.90
MAX_SECONDS = 120.0
# the configurations the bar is judged on (everything else: the method's defaults)
# IA advances its difficulty curriculum at 70% agreement, not the default 85% (the paper's):
# measured over seeds 0-2 at 900 steps, 86.7/98.9/95.8% against 85.0/98.3/81.0%.
BAR_A: dict[str, TrainConfig] = {
    "supervised": SupervisedConfig(task="PermutationPower", size=8, steps=800, threads=2, eval_every=100),
    "ia": IAConfig(
        task="PermutationPower", size=8, steps=900, threads=2, eval_every=100, curriculum_threshold=0.7
    ),
}


def run_bar_a(method: str, seed: int, runs_dir: Path, results_dir: Path) -> dict[str, Any]:
    """Train `method`'s bar-A configuration with `seed`; its accuracy, steps to 90% and seconds."""
    cfg = replace(BAR_A[method], seed=seed)
    trainer = train(method, cfg, runs_dir=runs_dir, results_dir=results_dir, quiet=True)
    final = trainer.run.curve[-1]
    reached = next((row["step"] for row in trainer.run.curve if row["accuracy"] > BAR), None)
    return {
        "method": method,
        "seed": seed,
        "steps": final["step"],
        "accuracy": final["accuracy"],
        "steps_to_bar": reached,
        "seconds": final["wall_seconds"],
        "met": final["accuracy"] > BAR and final["wall_seconds"] < MAX_SECONDS,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m baselines.bar_a", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=list(BAR_A), choices=list(BAR_A))
    parser.add_argument("--results-dir", type=Path, default=None, help="keep the result files here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        results_dir = args.results_dir or Path(tmp) / "results"
        print(f"bar A: accuracy > {BAR:.0%} within the step budget, in under {MAX_SECONDS:.0f} s")
        for method in args.methods:
            for seed in args.seeds:
                row = run_bar_a(method, seed, Path(tmp) / "runs", results_dir)
                rows.append(row)
                print(
                    f"{method:>11} seed {seed}: {row['accuracy']:.3f} after {row['steps']} steps "
                    f"({row['seconds']:.0f} s), first over {BAR:.0%} at step {row['steps_to_bar']}: "
                    f"{'met' if row['met'] else 'NOT met'}",
                    flush=True,
                )
    for method in args.methods:
        mine = [r for r in rows if r["method"] == method]
        print(f"{method}: bar met on {sum(r['met'] for r in mine)} of {len(mine)} seeds")
    return rows


if __name__ == "__main__":
    main()
