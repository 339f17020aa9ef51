"""One Gymnasium environment class for every task: answer a question by asking subquestions.

## Description
An episode draws a fresh random context (a set of facts; element names are random labels, new each
episode) and one question about it. Each step the agent either asks a subquestion, which the
environment answers and appends to the transcript, or gives its final answer, which ends the
episode. This is the "Amplify" interface of Christiano et al. (2018): an agent that decomposes
well can answer questions it could not answer alone.

## Observation space
`Dict` of int64 token arrays (0 = padding, 1 = `?`), fixed shape:
* `facts` (max_facts, fact_len): the context, one fact per row, shuffled, padded with 0 rows;
* `question` (question_len,): the episode's question;
* `sub_questions` (budget, question_len) and `sub_answers` (budget, answer_len): the transcript;
* `num_asked`: Discrete(budget + 1), how many subquestions were asked.
`env.unwrapped.task` renders and decodes tokens (`task.vocab`, `task.render_question`, ...).

## Action space
`MultiDiscrete([2] + [vocab] * max(question_len, answer_len))`: `action[0] == 0` asks the
subquestion `action[1 : 1 + question_len]`; `action[0] == 1` answers `action[1 : 1 + answer_len]`.

## Who answers subquestions
Simple questions (one-fact lookups, e.g. `s(x)`) are answered from the context; malformed ones
(nonsense tokens, names not in the episode) get `?`; all others go to `answerer`:
`"oracle-easier"` (default: the truth only for questions strictly easier than the episode's own
question, so forwarding the question earns nothing), `"lookup-only"`, `"oracle"` (the truth
always; not for scoring), or a batched callable `(facts, questions) -> answers`, e.g. a learner X.

## Rewards
1 for a correct final answer, else 0; minus `subquestion_cost` for each subquestion asked.

## Episode end
Terminated when the agent answers. Truncated (reward 0) when it asks a subquestion after using up
its budget (`max_subquestions`, default: the most the task's expert H ever needs).

## Info
Always `num_subquestions`. When the episode ends: `ground_truth` (answer tokens), `is_correct`,
`difficulty` (the task's difficulty class of the question) and `question_kind`.

## Arguments
`gym.make("Amp/PermutationPower-v0", size=None (64), max_size=None, answerer="oracle-easier",
question_kinds=None, max_subquestions=None, subquestion_cost=0.0, render_mode=None, **task_options)`.
`size` is the context size N (the paper's is 64; at most 4096, `Task.max_size_limit`, refused
with a ValueError before anything is allocated); `max_size` fixes the vocabulary and shapes for a
curriculum over sizes; `question_kinds` picks episode question kinds other than the main one
(e.g. `("parent",)` for union find); remaining keyword arguments go to the task (e.g.
`max_distance` for shortest paths). `reset(seed=..., options=...)` takes no options: the episode is
drawn from the seed alone, and any option key is refused rather than ignored.

## Version history
* v0: the environments as published. Since 2026-12-07, contexts above size 64 are generated
  4096 // size at a time instead of 64 (so the first reset at 4096 draws one context, not 64):
  at those sizes the episodes of a seed differ from the ones before that date; at 64 and below
  they are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from amp_envs.core import Answerer, EpisodeBatch, check_render_mode, check_reset_options
from amp_envs.tasks import Task, make_task

ObsDict = dict[str, Any]


class AmpEnv(gym.Env[ObsDict, np.ndarray]):
    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}

    def __init__(
        self,
        task: str | Task = "PermutationPower",
        size: int | None = None,
        answerer: str | Answerer = "oracle-easier",
        question_kinds: Sequence[str] | str | None = None,
        max_subquestions: int | None = None,
        subquestion_cost: float = 0.0,
        render_mode: str | None = None,
        **task_options: Any,
    ) -> None:
        check_render_mode(render_mode, self.metadata["render_modes"])
        self.task = make_task(task, size, **task_options)
        self.episodes = EpisodeBatch(
            self.task, 1, answerer, question_kinds, max_subquestions, subquestion_cost
        )
        self.observation_space = self.episodes.observation_space
        self.action_space = self.episodes.action_space
        self.render_mode = render_mode
        self._row = np.zeros(1, np.int64)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsDict, dict]:
        check_reset_options(options)
        super().reset(seed=seed)
        if seed is not None:
            self.episodes.clear_pool()
        self.episodes.reset(self.np_random, self._row)
        if self.render_mode == "human":
            print(self.render_text())
        return self._obs(), {"num_subquestions": 0}

    def step(self, action: np.ndarray) -> tuple[ObsDict, float, bool, bool, dict]:
        ep = self.episodes
        if ep.ctx is None:
            raise RuntimeError("call reset() before step()")
        if ep.done[0]:
            raise RuntimeError("the episode is over: call reset() before step()")
        actions = ep.check_actions(np.asarray(action).reshape(1, -1) if np.ndim(action) == 1 else action)
        rewards, terminated, truncated = ep.step(self.np_random, actions, self._row)
        info: dict[str, Any] = {"num_subquestions": int(ep.num_asked[0])}
        if ep.done[0]:
            info.update(ep.end_info(0))
        if self.render_mode == "human":
            print(self.render_text())
        return self._obs(), float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def _obs(self) -> ObsDict:
        obs = self.episodes.observation(0)
        return {
            "facts": obs["facts"].copy(),
            "question": obs["question"].copy(),
            "sub_questions": obs["sub_questions"].copy(),
            "sub_answers": obs["sub_answers"].copy(),
            "num_asked": int(obs["num_asked"]),
        }

    def render_text(self) -> str:
        return self.episodes.render(0)

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self.render_text()
        if self.render_mode == "human":
            print(self.render_text())
        return None
