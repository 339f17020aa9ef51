"""amp-envs: the algorithmic tasks of Iterated Amplification as Gymnasium environments.

    import gymnasium as gym
    import amp_envs  # registers Amp/*-v0
    env = gym.make("Amp/PermutationPower-v0", size=16)

The batched engine lives in `amp_envs.tasks`; `AmpEnv` is the environment (one class for every
task), `AmpVectorEnv` its native batched vector version, `ExpertPolicy` the scripted expert H.
"""

from __future__ import annotations

import gymnasium as gym

from amp_envs.env import AmpEnv
from amp_envs.expert import ExpertPolicy
from amp_envs.tasks import TASKS, Task, make_task
from amp_envs.vector import AmpVectorEnv

ENV_IDS = {name: f"Amp/{name}-v0" for name in TASKS}

for _name, _env_id in ENV_IDS.items():
    if _env_id not in gym.registry:
        gym.register(
            id=_env_id,
            entry_point="amp_envs.env:AmpEnv",
            vector_entry_point="amp_envs.vector:AmpVectorEnv",
            kwargs={"task": _name},
        )

__all__ = ["ENV_IDS", "TASKS", "AmpEnv", "AmpVectorEnv", "ExpertPolicy", "Task", "make_task"]
__version__ = "0.1.0"
