"""What a small context costs X when it is held in a larger run's shapes (the size curriculum
trains size 8 in size 64's 64 fact slots): one training step's forward and backward pass, padded
against the same contexts in their own shapes, measured in the same run.

    python -m baselines.bench_padding            # prints both and their ratio (about 1: X trims)

X drops the fact slots that are padding in every context of a batch (`model.trim_padding`);
without that, the padded step cost about 3x the native one here (0.89 s against 0.30 s,
permutation powering, 1 thread).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from amp_envs.tasks import make_task
from baselines.common import TrainConfig, build_model
from baselines.model import trim_padding


def seconds_per_step(model: torch.nn.Module, facts: torch.Tensor, questions: torch.Tensor) -> float:
    """Wall seconds of one forward and backward pass."""
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    model(facts, questions)[..., 0].sum().backward()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(
        prog="python -m baselines.bench_padding", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--task", default="PermutationPower")
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--max-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    padded_task = make_task(args.task, args.size, max_size=args.max_size)
    model = build_model(TrainConfig(task=args.task, size=args.max_size), padded_task)
    ctx = padded_task.generate(np.random.default_rng(0), 32)
    q = padded_task.sample_questions(ctx, np.random.default_rng(1), ctx_idx=np.repeat(np.arange(32), 32))
    padded = torch.from_numpy(ctx.facts)
    native = trim_padding(padded)  # the same contexts in their own fact slots
    questions = torch.from_numpy(q.reshape(32, 32, -1))
    # interleaved, the fastest of each: other work on the machine slows both alike
    seconds_per_step(model, native, questions)  # warm-up
    times = [
        (seconds_per_step(model, native, questions), seconds_per_step(model, padded, questions))
        for _ in range(args.repeats)
    ]
    t_native, t_padded = (min(t) for t in zip(*times, strict=True))
    print(f"{args.task}, size {args.size}, 32 contexts x 32 questions, {args.threads} thread(s)")
    print(f"  in its own shapes ({native.shape[1]} fact slots):     {t_native:.3f} s per step")
    print(f"  in size {args.max_size}'s shapes ({padded.shape[1]} fact slots): {t_padded:.3f} s per step")
    print(f"  padded / native: {t_padded / t_native:.2f}x")
    return t_padded / t_native


if __name__ == "__main__":
    main()
