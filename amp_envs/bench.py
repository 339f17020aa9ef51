"""Engine and environment benchmark: prints one table row per task.

    python -m amp_envs.bench [--size 64] [--quick]

Columns, all measured in this run on this machine:
* contexts/s: `task.generate` on batches of 1,000;
* truth q/s: ground-truth answers for a batch of questions (any kind H asks);
* H q/s: full expert transcripts with ground-truth subanswers (H's whole decomposition of one
  question, every subquestion answered), batched: the figure PAPER.md gives for the published
  code (317/87/111/140/162 us per question, i.e. 3,000-11,000 q/s);
* x published: H q/s over the published code's rate;
* x naive: the engine's truth q/s over `amp_envs.reference` (plain Python, one question at a time,
  from the facts) measured in this same run;
* env steps/s: `gym.make(...)` single environment, random actions, resets included;
* expert steps/s: the same env driven by `ExpertPolicy` (policy time included);
* vector steps/s: `AmpVectorEnv` with 1,024 sub-environments, random actions (steps x envs / s).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

import amp_envs
from amp_envs.expert import ExpertPolicy
from amp_envs.reference import reference_answer
from amp_envs.tasks import make_task
from amp_envs.vector import AmpVectorEnv

# PAPER.md: the published code, one question at a time, H's decomposition plus ground truth.
PUBLISHED_US_PER_QUESTION = {
    "PermutationPower": 317,
    "SequentialAssignment": 87,
    "UnionFind": 111,
    "WildcardSearch": 140,
    "ShortestPath": 162,
}


def best_rate(fn: Callable[[], int], repeats: int) -> float:
    """Items per second of the fastest of `repeats` calls (fn returns the number of items)."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        items = fn()
        best = max(best, items / (time.perf_counter() - start))
    return best


def bench_task(name: str, size: int, quick: bool) -> dict[str, float]:
    task = make_task(name, size)
    rng = np.random.default_rng(0)
    repeats = 2 if quick else 3
    n_ctx, per_ctx = (500, 20) if quick else (2000, 50)
    row: dict[str, float] = {}
    row["contexts/s"] = best_rate(lambda: len(task.generate(rng, 1000)), repeats)

    ctx = task.generate(rng, n_ctx)
    idx = np.repeat(np.arange(n_ctx), per_ctx)
    questions = task.sample_questions(ctx, rng, ctx_idx=idx)
    # Truth for the questions H actually asks: collect one round of H's transcripts' subquestions.
    transcripts = task.run_expert(ctx, idx, questions, rng)
    asked = np.arange(task.max_subquestions)[None, :] < transcripts.num_sub[:, None]
    sub_q = transcripts.sub_questions[asked]
    sub_idx = np.repeat(idx, transcripts.num_sub)
    all_q = np.concatenate([questions, sub_q])
    all_idx = np.concatenate([idx, sub_idx])
    row["truth q/s"] = best_rate(lambda: len(task.ground_truth(ctx, all_idx, all_q)), repeats)
    row["H q/s"] = best_rate(lambda: len(task.run_expert(ctx, idx, questions, rng).answers), repeats)
    published = PUBLISHED_US_PER_QUESTION.get(name)
    row["x published"] = row["H q/s"] * published / 1e6 if published else float("nan")

    sample = np.arange(0, len(all_q), max(1, len(all_q) // (100 if quick else 400)))

    def naive() -> int:
        for i in sample:
            reference_answer(task, ctx.facts[all_idx[i]], all_q[i])
        return len(sample)

    row["x naive"] = row["truth q/s"] / best_rate(naive, 1)

    env = gym.make(amp_envs.ENV_IDS[name], size=size)
    env.action_space.seed(0)
    steps = 1000 if quick else 5000
    actions = [env.action_space.sample() for _ in range(steps)]

    def run_env(policy: Callable | None) -> int:
        obs, _ = env.reset(seed=0)
        for i in range(steps):
            obs, _, terminated, truncated, _ = env.step(actions[i] if policy is None else policy(obs))
            if terminated or truncated:
                obs, _ = env.reset()
        return steps

    row["env steps/s"] = best_rate(lambda: run_env(None), repeats)
    row["expert steps/s"] = best_rate(lambda: run_env(ExpertPolicy(env)), repeats)

    venv = AmpVectorEnv(name, num_envs=1024, size=size)
    venv.action_space.seed(0)
    vactions = [venv.action_space.sample() for _ in range(20)]
    venv.reset(seed=0)

    def run_vector() -> int:
        for a in vactions:
            venv.step(a)
        return len(vactions) * venv.num_envs

    row["vector steps/s"] = best_rate(run_vector, repeats)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=64, help="context size (the paper's is 64)")
    parser.add_argument("--quick", action="store_true", help="smaller batches, fewer repeats")
    parser.add_argument("--tasks", nargs="*", default=list(amp_envs.TASKS), help="tasks to run")
    args = parser.parse_args(argv)
    columns = [
        "contexts/s",
        "truth q/s",
        "H q/s",
        "x published",
        "x naive",
        "env steps/s",
        "expert steps/s",
        "vector steps/s",
    ]
    print(f"amp_envs engine benchmark, size {args.size}{' (quick)' if args.quick else ''}\n")
    print("| task | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name in args.tasks:
        row = bench_task(name, args.size, args.quick)
        cells = [
            "n/a" if np.isnan(row[c]) else f"{row[c]:,.0f}x" if c.startswith("x ") else f"{row[c]:,.0f}"
            for c in columns
        ]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
