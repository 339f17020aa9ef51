"""Issue 4's bar, measured: IA with the learned expert H' (`ia-learned-h`) reaches within 1 point
of IA with the scripted H, on every task, using at most 50,000 demonstrations.

    python -m baselines.bar_learned_h                    # the verdict, from the committed results
    python -m baselines.bar_learned_h --train --jobs 2   # train into runs/results, then the verdict
    python -m baselines.bar_learned_h --sizes 16 --steps 600 --tasks UnionFind WildcardSearch
    python -m baselines.bar_learned_h --tasks ShortestPath --set demos=50000 demos_per_step=50

Both methods run with their defaults (or, with `--set`, ia-learned-h with those settings changed:
e.g. a demonstration budget spread over the whole run; with `--set-both`, both methods: e.g. an
option of X; the report names them), seed 0, for the same number of optimiser steps (X's updates:
`--steps`, default 1,000), so the comparison is of the targets each expert makes, not of their
speed: an ia-learned-h step also trains H' and decodes with it, and costs more (the wall seconds
of both are printed beside the accuracies). "Within 1 point" is on the accuracy on the fixed test
set at step `--steps` (the evaluation there, so a run trained further still counts at that step);
a run that stopped before `--steps` does not count.

The results live in leaderboard/learned-h-bar/results (weights beside, in .../weights), not in
leaderboard/results: a run's file is named by its configuration, not its budget, and IA's
default runs there are the 3-minute grid's, whose seed-0 files a longer run would replace.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from baselines.bar_b import TASKS
from baselines.grid import RunSpec, find_results, grid, parse_settings, run_grid
from baselines.leaderboard import LEADERBOARD_DIR

MAX_GAP = 0.01
MAX_DEMOS = 50_000
MAX_MINUTES = 60.0  # a cap, far above what the step budgets take here
RESULTS_DIR = LEADERBOARD_DIR / "learned-h-bar" / "results"


def specs(
    sizes: list[int],
    steps: int,
    seed: int,
    results_dir: str,
    runs_dir: str,
    threads: int,
    tasks: list[str],
    changed_learned: dict[str, Any] | None = None,
    changed: dict[str, Any] | None = None,
) -> list[RunSpec]:
    """IA with its defaults and `changed`, ia-learned-h with its defaults, `changed` and
    `changed_learned`."""
    settings = {**(changed or {}), "steps": steps, "max_minutes": MAX_MINUTES, "threads": threads}
    learned = {**settings, **(changed_learned or {})}
    return [
        *grid(tasks, ("ia",), sizes, [seed], settings, runs_dir, results_dir),
        *grid(tasks, ("ia-learned-h",), sizes, [seed], learned, runs_dir, results_dir),
    ]


def evaluation_at(result: dict[str, Any] | None, steps: int) -> dict[str, Any] | None:
    """The run's evaluation (curve row) at step `steps` (None: no result, or none there)."""
    if result is None:
        return None
    return next((row for row in result["curve"] if row["step"] == steps), None)


def verdict(ia: dict[str, Any] | None, learned: dict[str, Any] | None, steps: int) -> dict[str, Any]:
    """One task and size: the gap in accuracy at `steps`, the demonstrations used, and whether
    the bar holds (both runs must have an evaluation at `steps`)."""
    at = [evaluation_at(r, steps) for r in (ia, learned)]
    if None in at:
        return {"gap": None, "demos": None, "met": False}
    gap = at[0]["accuracy"] - at[1]["accuracy"]
    demos = learned["final"]["expert"]["demonstrations_used"]
    return {"gap": gap, "demos": demos, "met": gap <= MAX_GAP and demos <= MAX_DEMOS}


def describe(result: dict[str, Any] | None, steps: int) -> str:
    if result is None:
        return "no result file"
    row = evaluation_at(result, steps)
    if row is None:
        return f"no evaluation at step {steps:,} (trained {result['steps']:,} steps)"
    text = f"{100 * row['accuracy']:.1f}% at step {steps:,}, {row['wall_seconds'] / 60:.1f} min"
    if result["steps"] > steps:
        text += f" (trained on to {result['steps']:,}: {100 * result['final']['accuracy']:.1f}%)"
    expert = result["final"].get("expert")
    if expert:
        agree = expert["agreement_with_h"]
        text += (
            f"; {expert['demonstrations_used']:,} demonstrations, H' agrees with H on "
            f"{100 * agree['transcripts']:.1f}% of held-out transcripts at the end"
        )
    return text


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        prog="python -m baselines.bar_learned_h", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[8])
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps of both methods")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument(
        "--results-dir",
        default=None,
        help="the result files read (default: the committed ones; with --train: <runs-dir>/results)",
    )
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--train", action="store_true", help="train the missing runs first")
    parser.add_argument("--jobs", type=int, default=1, help="with --train: runs at a time")
    parser.add_argument("--threads", type=int, help="with --train: torch threads per run (2 // jobs)")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="settings of ia-learned-h alone, JSON"
    )
    parser.add_argument(
        "--set-both", nargs="*", default=[], metavar="KEY=VALUE", help="settings of both methods, JSON"
    )
    args = parser.parse_args(argv)
    if args.results_dir is None:  # what --train writes goes beside its runs, never into leaderboard/
        args.results_dir = str(Path(args.runs_dir) / "results") if args.train else str(RESULTS_DIR)
    changed, changed_both = parse_settings(args.set), parse_settings(args.set_both)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    threads = args.threads or max(1, 2 // max(1, args.jobs))
    runs = specs(
        args.sizes,
        args.steps,
        args.seed,
        args.results_dir,
        args.runs_dir,
        threads,
        args.tasks,
        changed,
        changed_both,
    )
    if args.train:
        run_grid(runs, jobs=args.jobs)
    found = find_results(args.results_dir, runs)
    by_key = {(s.settings["task"], s.settings["size"], s.method): found[s] for s in runs}
    print(
        f"issue 4: ia-learned-h within {100 * MAX_GAP:.0f} point of ia (scripted H) after {args.steps:,} "
        f"steps each, <= {MAX_DEMOS:,} demonstrations; seed {args.seed}"
    )
    if changed_both:
        print(f"both methods' settings changed from their defaults: {changed_both}")
    if changed:
        print(f"ia-learned-h's settings changed from its defaults: {changed}")
    rows = []
    for size in args.sizes:
        for task in args.tasks:
            ia, learned = by_key[task, size, "ia"], by_key[task, size, "ia-learned-h"]
            row = {"task": task, "size": size, **verdict(ia, learned, args.steps)}
            rows.append(row)
            gap = "-" if row["gap"] is None else f"{100 * row['gap']:+.1f} points"
            print(f"{task} size {size}: {'met' if row['met'] else 'NOT met'} (ia - ia-learned-h: {gap})")
            print(f"    ia:           {describe(ia, args.steps)}")
            print(f"    ia-learned-h: {describe(learned, args.steps)}")
    print(f"met on {sum(r['met'] for r in rows)} of {len(rows)}")
    return rows


if __name__ == "__main__":
    main()
