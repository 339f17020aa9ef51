"""Expert Iteration (Anthony, Tian and Barber, 2017) on the amplification tasks: search checked by
the environment's reward.

The apprentice is the same answerer X. The expert is a search: for every training question it
proposes candidate answers (the amplified answer Amplify^H(X), amplified answers with subanswers
sampled from X, X's own most likely answer and answers sampled from X), scores every distinct
candidate with the environment's reward (1 if correct: `Task.correct`, what `AmpEnv.step` pays),
and X is trained on a rewarded candidate. A question where no candidate earns reward gives no
target: it is dropped, and nothing unchecked ever reaches the replay buffer.

What differs from IA: the same amplified answers are proposed, but each is checked against the
reward before X may imitate it, and X's samples add candidates H's decomposition would not give;
IA reads no ground truth at all. What differs from supervised learning: X never sees a label, only
a 0/1 reward for answers it (or H with its help) proposed; questions its search cannot solve teach
it nothing. Every scored candidate is counted (`counts.reward_queries`), next to supervised's
`ground_truth_labels` and IA's zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from amp_envs.tasks import Contexts, Task
from baselines.common import ReplayBuffer, TrainConfig, amplify, choose, draw_questions
from baselines.trainer import Trainer


@dataclass
class ExItConfig(TrainConfig):
    replay_contexts: int = 320  # replay buffer size in contexts (x questions_per_context items)
    generate_contexts: int = 16  # contexts searched per training step
    amplify_samples: int = 2  # Amplify^H(X) with X's subanswers sampled, per question
    direct_samples: int = 2  # answers sampled from X itself, per question
    temperature: float = 1.0  # sampling temperature of both
    # "all": search and train on every kind of question H asks X (as IA); "main": the main kind
    question_kinds: str = "all"


def setup(t: Trainer) -> None:
    cfg, task = t.cfg, t.train_task()
    assert isinstance(cfg, ExItConfig)
    if cfg.question_kinds not in ("all", "main"):
        raise ValueError(f"question_kinds must be 'all' or 'main', got {cfg.question_kinds!r}")
    if cfg.amplify_samples < 0 or cfg.direct_samples < 0 or cfg.temperature < 0:
        raise ValueError("amplify_samples, direct_samples and temperature must be >= 0")
    t.extra["buffer"] = ReplayBuffer(
        cfg.replay_contexts, (task.max_facts, task.fact_len), cfg.questions_per_context, task.question_len
    )


def propose(t: Trainer, ctx: Contexts, q: np.ndarray) -> np.ndarray:
    """Candidate answers (M, C) for questions (M, Lq), per context in order, best guess first:
    Amplify^H(X), sampled amplifications, X's answer, X's samples."""
    cfg, task, model = t.cfg, t.train_task(), t.model
    assert isinstance(cfg, ExItConfig)
    b, m = len(ctx), len(q)
    per = m // b
    greedy, asked = amplify(task, model, ctx, q, t.rng)
    columns = [greedy[:, None]]
    if cfg.amplify_samples:
        # every question repeated amplify_samples times within its context: one batched call
        k = cfg.amplify_samples
        tiled = np.repeat(q.reshape(b, 1, per, -1), k, axis=1).reshape(b * k * per, -1)
        sampled, more = amplify(task, model, ctx, tiled, t.rng, cfg.temperature)
        columns.append(sampled.reshape(b, k, per).transpose(0, 2, 1).reshape(m, k))
        asked += more
    t.count("expert_subquestions", asked)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logp = model(torch.from_numpy(ctx.facts), torch.from_numpy(q.reshape(b, per, -1))).reshape(m, -1)
    model.train(was_training)
    columns.append(choose(logp, t.rng)[:, None])
    if cfg.direct_samples:
        many = logp[:, None, :].expand(m, cfg.direct_samples, -1)
        columns.append(choose(many, t.rng, cfg.temperature))
    return np.concatenate(columns, axis=1).astype(np.int64)


def reward(task: Task, ctx: Contexts, ctx_idx: np.ndarray, q: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """The environment's reward for final answers (M,): 1 where correct (`AmpEnv.step` pays the same)."""
    return task.correct(ctx, ctx_idx, q, answers[:, None])


def score(
    task: Task, ctx: Contexts, ctx_idx: np.ndarray, q: np.ndarray, candidates: np.ndarray
) -> tuple[np.ndarray, int]:
    """Which candidates (M, C) earn reward, querying it once per distinct candidate of a question.
    Returns the (M, C) bool matrix and the number of reward queries."""
    same = candidates[:, :, None] == candidates[:, None, :]  # (M, C, C)
    first = ~np.tril(same, k=-1).any(axis=2)  # not equal to any earlier candidate of its row
    rows, cols = np.nonzero(first)
    paid = np.zeros(candidates.shape, bool)
    paid[rows, cols] = reward(task, ctx, ctx_idx[rows], q[rows], candidates[rows, cols])
    rewarded = (same & paid[:, None, :]).any(axis=2)  # duplicates share their first copy's reward
    return rewarded, len(rows)


def train_step(t: Trainer) -> dict[str, float]:
    cfg, task = t.cfg, t.train_task()
    assert isinstance(cfg, ExItConfig)
    buffer = t.extra["buffer"]
    per = cfg.questions_per_context
    # 1. expert: search for answers that earn reward
    ctx = task.generate(t.rng, cfg.generate_contexts)
    idx, q, difficulty, hardest = draw_questions(
        task,
        ctx,
        t.rng,
        per,
        t.curriculum.max_difficulty,
        with_difficulty=task.difficulty_from_question or t.curriculum.mode == "difficulty",
        kinds=task.episode_kinds if cfg.question_kinds == "all" else None,
    )
    candidates = propose(t, ctx, q)
    rewarded, queries = score(task, ctx, idx, q, candidates)
    t.count("searched_questions", len(q))
    t.count("reward_queries", queries)
    has_target = rewarded.any(axis=1)
    targets = candidates[np.arange(len(q)), rewarded.argmax(axis=1)]  # the first rewarded candidate
    # 2. only rewarded (question, answer) pairs enter the buffer: a context's slots are filled with
    # its rewarded questions (repeated if fewer than per); contexts with none are dropped
    ok = has_target.reshape(-1, per)
    keep = np.flatnonzero(ok.any(axis=1))
    if len(keep):
        slot_rank = np.argsort(~ok[keep] + t.rng.random((len(keep), per)), axis=1)  # rewarded first
        take = slot_rank[np.arange(len(keep))[:, None], np.arange(per)[None, :] % ok[keep].sum(1)[:, None]]
        pick = keep[:, None] * per + take
        buffer.add(ctx.facts[keep], q[pick], targets[pick], difficulty[pick])
    metrics = {
        "rewarded_fraction": float(has_target.mean()),
        "amplified_correct": float(rewarded[:, 0].mean()),
        "buffer": float(buffer.size),
    }
    if buffer.size == 0:  # nothing rewarded yet: nothing to learn from
        return {**metrics, "loss": 0.0, "train_agreement": 0.0}
    # 3. apprentice: imitate the rewarded answers
    facts, questions, y_np, diff = buffer.sample(t.rng, cfg.batch_contexts)
    logp = t.model(torch.from_numpy(facts), torch.from_numpy(questions))
    y = torch.from_numpy(y_np.reshape(-1))
    loss = F.nll_loss(logp.reshape(len(y), -1), y)
    t.optimise(loss)
    agree = logp.detach().argmax(-1).reshape(-1).numpy() == y_np.reshape(-1)
    t.curriculum.update(agree, diff.reshape(-1), hardest)
    return {**metrics, "loss": loss.item(), "train_agreement": float(agree.mean())}
