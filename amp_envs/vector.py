"""A native batched `gymnasium.vector.VectorEnv` over the engine: `num_envs` episodes stepped as
numpy arrays, with no per-environment Python objects.

Same spaces, rewards and arguments as `AmpEnv` (see `amp_envs.env`), batched along a first axis.
Autoreset follows Gymnasium's default NEXT_STEP mode: the step after an episode ends resets that
sub-environment (its action is ignored, reward 0, not terminated). `info` holds numpy arrays with
`_key` masks (Gymnasium's vector info convention); the end-of-episode keys appear only for
sub-environments whose episode just ended.

Make it with `gym.make_vec("Amp/PermutationPower-v0", num_envs=64, vectorization_mode="vector_entry_point")`
or directly `AmpVectorEnv("PermutationPower", num_envs=64, size=16)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from amp_envs.core import Answerer, EpisodeBatch, check_render_mode, check_reset_options
from amp_envs.tasks import Task, make_task


class AmpVectorEnv(VectorEnv):
    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        task: str | Task = "PermutationPower",
        num_envs: int = 1,
        size: int | None = None,
        answerer: str | Answerer = "oracle-easier",
        question_kinds: Sequence[str] | str | None = None,
        max_subquestions: int | None = None,
        subquestion_cost: float = 0.0,
        render_mode: str | None = None,
        **task_options: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        check_render_mode(render_mode, self.metadata["render_modes"])
        self.task = make_task(task, size, **task_options)
        self.num_envs = int(num_envs)
        self.episodes = EpisodeBatch(
            self.task, self.num_envs, answerer, question_kinds, max_subquestions, subquestion_cost
        )
        self.single_observation_space = self.episodes.observation_space
        self.single_action_space = self.episodes.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = render_mode
        self._needs_reset = np.zeros(self.num_envs, bool)
        self._all = np.arange(self.num_envs)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        check_reset_options(options)
        if isinstance(seed, list):
            raise ValueError("AmpVectorEnv takes one integer seed for the whole batch, not a list")
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
            self.episodes.clear_pool()
        self.episodes.reset(self.np_random, self._all)
        self._needs_reset[:] = False
        return self._obs(), {"num_subquestions": self.episodes.num_asked.copy()}

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        ep = self.episodes
        if ep.ctx is None:
            raise RuntimeError("call reset() before step()")
        actions = ep.check_actions(actions)
        restart = np.flatnonzero(self._needs_reset)
        running = np.flatnonzero(~self._needs_reset)
        rewards, terminated, truncated = ep.step(self.np_random, actions, running)
        ep.reset(self.np_random, restart)
        ended = np.flatnonzero(terminated | truncated)
        self._needs_reset[:] = False
        self._needs_reset[ended] = True
        infos: dict[str, Any] = {"num_subquestions": ep.num_asked.copy()}
        for i in ended:
            infos = self._add_info(infos, ep.end_info(int(i)), int(i))
        return self._obs(), rewards, terminated, truncated, infos

    def _obs(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.episodes.observation().items()}

    def render(self) -> tuple[str, ...] | None:
        if self.render_mode == "ansi":
            return tuple(self.episodes.render(i) for i in range(self.num_envs))
        return None
