"""Supervised learning from ground truth: the paper's comparison.

Every step draws fresh contexts and questions, labels every question with the engine's ground
truth, and trains X on them. Each label is counted (`counts.ground_truth_labels`): this is the
information Iterated Amplification does without.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from baselines.common import TrainConfig, draw_questions
from baselines.trainer import Trainer


@dataclass
class SupervisedConfig(TrainConfig):
    # Questions from the natural distribution: with ground-truth labels a difficulty curriculum
    # is not needed (measured on permutation powering, size 8: faster without it).
    curriculum: str = "none"


def train_step(t: Trainer) -> dict[str, float]:
    cfg, task = t.cfg, t.train_task()
    ctx = task.generate(t.rng, cfg.batch_contexts)
    idx, q, difficulty, hardest = draw_questions(
        task, ctx, t.rng, cfg.questions_per_context, t.curriculum.max_difficulty, cfg.curriculum_oversample
    )
    labels = task.ground_truth(ctx, idx, q)[:, 0]
    t.count("ground_truth_labels", len(labels))
    questions = q.reshape(cfg.batch_contexts, cfg.questions_per_context, -1)
    loss, logp = t.model.loss(
        torch.from_numpy(ctx.facts), torch.from_numpy(questions), torch.from_numpy(labels)
    )
    t.optimise(loss)
    agree = logp.detach().argmax(-1).reshape(-1).cpu().numpy() == labels
    t.curriculum.update(agree, difficulty, hardest)
    return {"loss": loss.item(), "train_agreement": float(agree.mean())}
