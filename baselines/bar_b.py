"""Issue 3's bar B, measured: at size 16, IA with the scripted H reaches >= 99% on all five tasks,
each within 20 minutes; supervised learning reaches >= 99% too; and IA needs at most 1.5x
supervised's steps to get there.

    python -m baselines.bar_b                   # the verdict, read off the committed result files
    python -m baselines.bar_b --train --jobs 2  # train the runs into runs/results, then the verdict
    python -m baselines.bar_b --tasks ShortestPath --set 'model_overrides={"reach_hops": 16}' \
        --set-ia skip_unknown_targets=true

The runs are the methods' defaults (or, with `--set`, those settings changed for both methods,
with `--set-ia` for IA alone and with `--set-supervised` for supervised learning alone, e.g. a
longer step budget for its learning-rate schedule; the bar itself is about the defaults) at size
16, seed 0, with a 20-minute budget each (a run's name depends on its step budget, not on its
time budget: `--train` continues a run of the same configuration cut short by time from its
checkpoint). The verdict reads the result files by the configs they record, the step budget aside
where the learning rate is constant (`baselines.grid.find_results`).
"Reaches 99%" is the first evaluation (every 100 steps, on the fixed test set) at >= 99%, with
the wall seconds it took; the final accuracy is shown beside it, since a run can pass 99% and
fall back. `--train` runs `--jobs` runs at a time with 2 // jobs threads each, so the seconds
are comparable only between runs made alike (the result files record the threads).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from baselines.grid import RunSpec, find_results, grid, parse_settings, run_grid
from baselines.leaderboard import LEADERBOARD_DIR

TASKS = ("PermutationPower", "SequentialAssignment", "ShortestPath", "UnionFind", "WildcardSearch")
SIZE = 16
BAR = 0.99
MAX_SECONDS = 20 * 60.0
MAX_STEP_RATIO = 1.5
METHOD_NAMES = {"supervised": "supervised learning", "ia": "IA"}  # the two runs per task, in order


def specs(
    seed: int,
    results_dir: str | Path,
    runs_dir: str | Path,
    threads: int,
    tasks: tuple[str, ...] = TASKS,
    changed: dict[str, Any] | None = None,
    changed_by_method: dict[str, dict[str, Any]] | None = None,
) -> list[RunSpec]:
    """Each method's size-16 run of each task: the bar's budget, `changed` for both methods and
    `changed_by_method[method]` for that method alone."""
    settings = {**(changed or {}), "max_minutes": MAX_SECONDS / 60, "threads": threads}
    own = changed_by_method or {}
    return [
        spec
        for method in METHOD_NAMES
        for spec in grid(
            tasks, (method,), [SIZE], [seed], {**settings, **own.get(method, {})}, runs_dir, results_dir
        )
    ]


def reached(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run's first evaluation at >= 99% (step, wall_seconds, questions), or None."""
    return None if result is None else result["steps_to"]["99"]


def verdict(supervised: dict[str, Any] | None, ia: dict[str, Any] | None) -> dict[str, Any]:
    """One task's bar: each method's first evaluation at >= 99% (None: never, or no result) and
    whether IA got there within the time budget and within 1.5x supervised's steps."""
    sup, amp = reached(supervised), reached(ia)
    ratio = amp["step"] / sup["step"] if sup and amp else None
    ia_in_time = amp is not None and amp["wall_seconds"] <= MAX_SECONDS
    sup_in_time = sup is not None and sup["wall_seconds"] <= MAX_SECONDS
    return {
        "supervised": sup,
        "ia": amp,
        "step_ratio": ratio,
        "met": ia_in_time and sup_in_time and ratio is not None and ratio <= MAX_STEP_RATIO,
    }


def describe(result: dict[str, Any] | None, hit: dict[str, Any] | None) -> str:
    if result is None:
        return "no result file"
    final = f"final {100 * result['final']['accuracy']:.1f}% after {result['steps']:,} steps"
    if hit is None:
        best = max((row["accuracy"] for row in result["curve"]), default=result["final"]["accuracy"])
        return f"never 99% (best {100 * best:.1f}%, {final})"
    return f"99% at step {hit['step']:,}, {hit['wall_seconds'] / 60:.1f} min ({final})"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m baselines.bar_b", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--results-dir",
        default=None,
        help="the result files read (default: the committed ones; with --train: <runs-dir>/results)",
    )
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--train", action="store_true", help="train the missing or shorter runs first")
    parser.add_argument("--jobs", type=int, default=1, help="with --train: runs at a time")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="settings other than the defaults, JSON"
    )
    parser.add_argument(
        "--set-ia", nargs="*", default=[], metavar="KEY=VALUE", help="settings for IA alone, JSON"
    )
    parser.add_argument(
        "--set-supervised",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="settings for supervised learning alone, JSON",
    )
    args = parser.parse_args(argv)
    if args.results_dir is None:  # what --train writes goes beside its runs, never into leaderboard/
        args.results_dir = (
            str(Path(args.runs_dir) / "results") if args.train else str(LEADERBOARD_DIR / "results")
        )
    changed = parse_settings(args.set)
    changed_by_method = {"supervised": parse_settings(args.set_supervised), "ia": parse_settings(args.set_ia)}
    threads = max(1, 2 // max(1, args.jobs))
    runs = specs(
        args.seed, args.results_dir, args.runs_dir, threads, tuple(args.tasks), changed, changed_by_method
    )
    if args.train:
        run_grid(runs, jobs=args.jobs)
    found = find_results(args.results_dir, runs)
    by_key = {(s.settings["task"], s.method): found[s] for s in runs}
    rows = []
    minutes = MAX_SECONDS / 60
    print(f"bar B: size {SIZE}, seed {args.seed}; IA and supervised >= {BAR:.0%} within {minutes:.0f} min,")
    print(f"IA's steps to {BAR:.0%} <= {MAX_STEP_RATIO}x supervised's")
    if changed:
        print(f"settings changed from the defaults (so not the bar itself): {changed}")
    for method, own in changed_by_method.items():
        if own:
            print(
                f"{METHOD_NAMES[method]}'s settings changed from its defaults (so not the bar itself): {own}"
            )
    for task in args.tasks:
        sup, amp = by_key[task, "supervised"], by_key[task, "ia"]
        row = {"task": task, **verdict(sup, amp)}
        rows.append(row)
        ratio = "-" if row["step_ratio"] is None else f"{row['step_ratio']:.2f}x"
        print(f"{task}: {'met' if row['met'] else 'NOT met'} (IA/supervised steps {ratio})")
        print(f"    supervised: {describe(sup, row['supervised'])}")
        print(f"    ia:         {describe(amp, row['ia'])}")
    print(f"bar B met on {sum(r['met'] for r in rows)} of {len(rows)} tasks")
    return rows


if __name__ == "__main__":
    main()
