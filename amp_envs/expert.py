"""The scripted expert H as a policy for the environments.

H is stateless given the transcript: from the question and the answers it got so far it decides
its next subquestion or its final answer (`Task.expert_step`). `ExpertPolicy` turns that into
actions for `AmpEnv` (one observation) or `AmpVectorEnv` (a batch of observations).

    env = gym.make("Amp/UnionFind-v0", size=16)
    expert = ExpertPolicy(env)
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(expert(obs))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from amp_envs.core import ANSWER, ASK
from amp_envs.tasks import Task


class ExpertPolicy:
    """Plays H on any amp_envs environment (single or vector)."""

    def __init__(self, env_or_task: Any) -> None:
        task = (
            env_or_task if isinstance(env_or_task, Task) else getattr(env_or_task, "unwrapped", env_or_task)
        )
        task = task if isinstance(task, Task) else getattr(task, "task", None)
        if not isinstance(task, Task):
            raise ValueError(f"ExpertPolicy needs an amp_envs environment or Task, got {env_or_task!r}")
        self.task = task
        self.token_slots = max(task.question_len, task.answer_len)

    def __call__(self, obs: dict[str, Any]) -> np.ndarray:
        question = np.asarray(obs["question"])
        single = question.ndim == 1
        q = question[None] if single else question
        sub_answers = np.asarray(obs["sub_answers"])
        sub_answers = sub_answers[None] if single else sub_answers
        num_asked = np.atleast_1d(np.asarray(obs["num_asked"], dtype=np.int64))
        done, next_q, final = self.task.expert_step(q, sub_answers, num_asked)
        actions = np.zeros((len(q), 1 + self.token_slots), dtype=np.int64)
        actions[:, 0] = np.where(done, ANSWER, ASK)
        actions[~done, 1 : 1 + self.task.question_len] = next_q[~done]
        actions[done, 1 : 1 + self.task.answer_len] = final[done]
        return actions[0] if single else actions
