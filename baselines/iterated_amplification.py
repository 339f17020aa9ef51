"""Iterated Amplification with the scripted expert H (the paper's main method).

Targets are Amplify^H(X'): H decomposes each training question, simple subquestions are read off
the context, and every other subquestion is answered by X', a slowly moving copy of X (an
exponential moving average of its weights). X is trained on these amplified answers, drawn from a
replay buffer that data generation keeps filling. No ground-truth answer is ever read:
`baselines.common.amplify` only sees H, the model, and the contexts through `FactsAndLookups`
(the facts, and answers to simple subquestions), which holds no way to the true answers.
As X gets the easy questions right, the amplified answers to harder questions built from them
become right, and X learns those; the difficulty curriculum paces this.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from amp_envs.tasks.base import UNKNOWN, ExpertProgram
from baselines.common import FactsAndLookups, ReplayBuffer, TrainConfig, amplify, draw_questions
from baselines.trainer import Trainer
from baselines.validation import check_range


@dataclass
class IAConfig(TrainConfig):
    ema_horizon: float = 20.0  # X' = EMA of X's weights, decay 1 - 1 / horizon (the paper: ~1000)
    replay_contexts: int = 320  # replay buffer size in contexts (x questions_per_context items)
    generate_contexts: int = 16  # contexts amplified per training step
    # "all": train on every kind of question H asks X (union find's parent and depth, shortest
    # path's next step, ...: without them X' can only say `?` to those subquestions, and
    # `?` everywhere is a fixed point of amplification); "main": the main kind only
    question_kinds: str = "all"
    # True: amplified answers that are `?` (H could not compose an answer from the subanswers)
    # are left out of the loss and of the curriculum's agreement. On shortest path `?` is a
    # fixed point for unreachable pairs (their subquestions are about unreachable pairs too):
    # with chain reach, size 16, IA was right at every finite distance and said `?` to 43% of
    # the unreachable ones. Off by default (the runs so far trained on them).
    skip_unknown_targets: bool = False

    BEFORE_ADDED: ClassVar[dict[str, Any]] = {**TrainConfig.BEFORE_ADDED, "skip_unknown_targets": False}

    def check(self) -> None:
        super().check()
        if self.question_kinds not in ("all", "main"):
            raise ValueError(f"question_kinds must be 'all' or 'main', got {self.question_kinds!r}")
        check_range(self, "ema_horizon", 1)
        check_range(self, "replay_contexts", 1)
        check_range(self, "generate_contexts", 1)


class EMAModel:
    """X': the target copy of X, updated as an exponential moving average."""

    def __init__(self, model: torch.nn.Module, horizon: float) -> None:
        self.model = copy.deepcopy(model).eval()
        self.decay = 1.0 - 1.0 / max(horizon, 1.0)
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for target, source in zip(self.model.parameters(), model.parameters(), strict=True):
            target.lerp_(source, 1.0 - self.decay)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)


def setup(t: Trainer) -> None:
    cfg, task = t.cfg, t.train_task()
    assert isinstance(cfg, IAConfig)
    if t.curriculum.uses_difficulty and not task.difficulty_from_question:
        raise ValueError(
            f"{task.name}'s difficulty classes are computed from the context (they reveal part of "
            "the answer), so IA cannot use a difficulty curriculum (nor `both`) here: use --curriculum size"
        )
    t.extra["target"] = EMAModel(t.model, cfg.ema_horizon)
    t.extra["buffer"] = ReplayBuffer(
        cfg.replay_contexts, (task.max_facts, task.fact_len), cfg.questions_per_context, task.question_len
    )


def train_step(t: Trainer, expert: Callable[[np.ndarray], ExpertProgram] | None = None) -> dict[str, float]:
    """One step of data generation and one of learning. `expert` decomposes the questions
    (default: the scripted H; `learned_expert.py` passes its learned H')."""
    cfg, task = t.cfg, t.train_task()
    assert isinstance(cfg, IAConfig)
    target, buffer = t.extra["target"], t.extra["buffer"]
    # 1. data: fresh contexts and questions, answered by Amplify^H(X')
    ctx = task.generate(t.rng, cfg.generate_contexts)
    # The task's difficulty classes are only looked at where they are read off the question
    # (setup refuses a difficulty curriculum elsewhere): they must not steer IA's data.
    _, q, difficulty, hardest = draw_questions(
        task,
        ctx,
        t.rng,
        cfg.questions_per_context,
        t.curriculum.max_difficulty,
        oversample=cfg.curriculum_oversample,
        with_difficulty=task.difficulty_from_question,
        kinds=task.episode_kinds if cfg.question_kinds == "all" else None,
    )
    answers, asked = amplify(task, target.model, FactsAndLookups(task, ctx), q, t.rng, expert)
    t.count("amplified_questions", len(q))
    t.count("expert_subquestions" if expert is None else "learned_expert_subquestions", asked)
    per = cfg.questions_per_context
    buffer.add(
        ctx.facts,
        q.reshape(len(ctx), per, -1),
        answers.reshape(len(ctx), per),
        difficulty.reshape(len(ctx), per),
    )
    # 2. learning: imitate the amplified answers
    facts, questions, targets, diff = buffer.sample(t.rng, cfg.batch_contexts)
    targets, diff = targets.reshape(-1), diff.reshape(-1)
    used = targets != UNKNOWN if cfg.skip_unknown_targets else np.ones(len(targets), bool)
    t.count("unknown_targets_skipped", int((~used).sum()))
    loss, logp = t.model.loss(
        torch.from_numpy(facts),
        torch.from_numpy(questions),
        torch.from_numpy(targets),
        torch.from_numpy(used),
    )
    t.optimise(loss)
    target.update(t.model)
    agree = logp.detach().argmax(-1).cpu().numpy() == targets
    t.curriculum.update(agree[used], diff[used], hardest)
    return {"loss": loss.item(), "train_agreement": float(agree.mean()), "buffer": float(buffer.size)}
