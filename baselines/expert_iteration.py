"""Expert Iteration (Anthony, Tian and Barber, 2017) on the amplification tasks: search checked by
the environment's reward.

The apprentice is the same answerer X. The expert is a search: for every training question it
proposes the amplified answer Amplify^H(X) and X's own answer; where neither earns reward, it
searches on with amplified answers whose subanswers are sampled from X and answers sampled from X.
Every distinct candidate is scored with the environment's reward (1 if correct: `Task.correct`,
what `AmpEnv.step` pays), and X is trained on the first rewarded one. A question where no
candidate earns reward gives no target: it is dropped, and nothing unchecked ever reaches the
replay buffer.

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

from amp_envs.tasks import Contexts, Task
from baselines.common import FactsAndLookups, ReplayBuffer, TrainConfig, amplify, choose, draw_questions
from baselines.trainer import Trainer
from baselines.validation import check_range


@dataclass
class ExItConfig(TrainConfig):
    replay_contexts: int = 320  # replay buffer size in contexts (x questions_per_context items)
    generate_contexts: int = 16  # contexts searched per training step
    amplify_samples: int = 2  # Amplify^H(X) with X's subanswers sampled, per question
    direct_samples: int = 2  # answers sampled from X itself, per question
    temperature: float = 1.0  # sampling temperature of both
    # "all": search and train on every kind of question H asks X (as IA); "main": the main kind
    question_kinds: str = "all"

    def check(self) -> None:
        super().check()
        if self.question_kinds not in ("all", "main"):
            raise ValueError(f"question_kinds must be 'all' or 'main', got {self.question_kinds!r}")
        for name in ("replay_contexts", "generate_contexts"):
            check_range(self, name, 1)
        for name in ("amplify_samples", "direct_samples", "temperature"):
            check_range(self, name, 0)


def setup(t: Trainer) -> None:
    cfg, task = t.cfg, t.train_task()
    assert isinstance(cfg, ExItConfig)
    t.extra["buffer"] = ReplayBuffer(
        cfg.replay_contexts, (task.max_facts, task.fact_len), cfg.questions_per_context, task.question_len
    )


def search(
    t: Trainer, ctx: Contexts, idx: np.ndarray, q: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The expert. Questions (M, Lq) come per context in order. First the greedy candidates,
    Amplify^H(X) then X's own answer, are scored; the questions neither solves are searched further
    with sampled amplifications and samples from X. Returns the target of each question (the first
    rewarded candidate), whether it has one, and whether Amplify^H(X) alone was rewarded."""
    cfg, task, model = t.cfg, t.train_task(), t.model
    assert isinstance(cfg, ExItConfig)
    b, m = len(ctx), len(q)
    greedy, asked = amplify(task, model, FactsAndLookups(task, ctx), q, t.rng)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logp = model(torch.from_numpy(ctx.facts), torch.from_numpy(q.reshape(b, m // b, -1))).reshape(m, -1)
    model.train(was_training)
    first = np.stack([greedy, choose(logp, t.rng)], axis=1)
    rewarded, queries = score(task, ctx, idx, q, first)
    targets = first[np.arange(m), rewarded.argmax(axis=1)]
    has_target, amplified_correct = rewarded.any(axis=1), rewarded[:, 0]
    u = np.flatnonzero(~has_target)
    if len(u) and cfg.amplify_samples + cfg.direct_samples:
        columns = []
        if cfg.amplify_samples:  # each unsolved question k times, one per (repeated) context
            k = cfg.amplify_samples
            rows = np.repeat(idx[u], k)
            view, repeated = FactsAndLookups(task, ctx.take(rows)), np.repeat(q[u], k, axis=0)
            sampled, more = amplify(task, model, view, repeated, t.rng, temperature=cfg.temperature)
            columns.append(sampled.reshape(len(u), k))
            asked += more
        if cfg.direct_samples:
            columns.append(
                choose(logp[u, None, :].expand(-1, cfg.direct_samples, -1), t.rng, cfg.temperature)
            )
        more_candidates = np.concatenate(columns, axis=1).astype(np.int64)
        found, n = score(task, ctx, idx[u], q[u], more_candidates, known_wrong=first[u])
        queries += n
        targets[u] = more_candidates[np.arange(len(u)), found.argmax(axis=1)]
        has_target[u] = found.any(axis=1)
    t.count("expert_subquestions", asked)
    t.count("reward_queries", queries)
    return targets, has_target, amplified_correct


def reward(task: Task, ctx: Contexts, ctx_idx: np.ndarray, q: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """The environment's reward for final answers (M,): 1 where correct (`AmpEnv.step` pays the same)."""
    return task.correct(ctx, ctx_idx, q, answers[:, None])


def score(
    task: Task,
    ctx: Contexts,
    ctx_idx: np.ndarray,
    q: np.ndarray,
    candidates: np.ndarray,
    known_wrong: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Which candidates (M, C) earn reward, querying it once per distinct candidate of a question
    and never for one in `known_wrong` (M, C0), answers already scored 0. Returns the (M, C) bool
    matrix and the number of reward queries."""
    same = candidates[:, :, None] == candidates[:, None, :]  # (M, C, C)
    new = ~np.tril(same, k=-1).any(axis=2)  # not equal to any earlier candidate of its row
    if known_wrong is not None:
        new &= ~(candidates[:, :, None] == known_wrong[:, None, :]).any(axis=2)
    rows, cols = np.nonzero(new)
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
        oversample=cfg.curriculum_oversample,
        with_difficulty=task.difficulty_from_question or t.curriculum.uses_difficulty,
        kinds=task.episode_kinds if cfg.question_kinds == "all" else None,
    )
    targets, has_target, amplified_correct = search(t, ctx, idx, q)
    t.count("searched_questions", len(q))
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
        "amplified_correct": float(amplified_correct.mean()),
        "buffer": float(buffer.size),
    }
    if buffer.size == 0:  # nothing rewarded yet: nothing to learn from
        return {**metrics, "loss": 0.0, "train_agreement": 0.0}
    # 3. apprentice: imitate the rewarded answers
    facts, questions, y_np, diff = buffer.sample(t.rng, cfg.batch_contexts)
    loss, logp = t.model.loss(
        torch.from_numpy(facts), torch.from_numpy(questions), torch.from_numpy(y_np.reshape(-1))
    )
    t.optimise(loss)
    agree = logp.detach().argmax(-1).reshape(-1).cpu().numpy() == y_np.reshape(-1)
    t.curriculum.update(agree, diff.reshape(-1), hardest)
    return {**metrics, "loss": loss.item(), "train_agreement": float(agree.mean())}
