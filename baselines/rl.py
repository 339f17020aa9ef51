"""Reinforcement learning with stable-baselines3 on the Gymnasium environments themselves.

The agent plays H: in each episode it asks subquestions and gives a final answer, and is paid 1
for a correct answer. It sees the environment only through the public API (`gym.make("Amp/...")`
and the vector env): no decomposition, no amplification, no labels, only the reward.

Two settings (`--setting`):
* `oracle-easier` (default): subquestions strictly easier than the episode's question are answered
  truthfully (simple ones from the context), so an agent that learns H's decomposition scores
  100%, and one that forwards its own question scores 0;
* `lookup-only`: only simple (one-fact) subquestions get answers; the agent must chain lookups itself
  within the subquestion budget (H's budget), which cannot reach every answer.

A training step is one rollout of `num_envs * rollout_steps` environment steps followed by the
algorithm's update (PPO: `epochs` passes over the rollout in minibatches); `--steps` counts these,
`counts.environment_steps` the environment steps, `counts.reward_queries` the final answers scored.
Evaluation plays the deterministic policy once on each of `eval_contexts * eval_questions_per_context`
episodes of a vector env reset with the fixed `EVAL_SEED` (the same number of held-out main-kind
questions as the other methods' test set, from the env's own episode stream; not the same items).

Features (`--features`): `tokens` (default, `TokenExtractor`: token embeddings, one vector per fact
and per transcript line, the question attending over them) or `flat` (SB3's default for Dict
observations: raw token ids as floats, concatenated into an MLP).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

import amp_envs  # noqa: F401  (registers Amp/*-v0)
from amp_envs.tasks.base import UNKNOWN
from baselines.common import EVAL_SEED, TrainConfig
from baselines.io import atomic_write_bytes
from baselines.trainer import Trainer
from baselines.validation import normalise_floats

SETTINGS = ("oracle-easier", "lookup-only")


@dataclass
class RLConfig(TrainConfig):
    steps: int = 200  # rollouts (each num_envs * rollout_steps environment steps, then an update)
    eval_every: int = 20
    checkpoint_every: int = 50
    curriculum: str = "none"  # the env's own question distribution: no curriculum
    lr: float = 3e-4
    algo: str = "PPO"  # a stable-baselines3 algorithm by name that takes MultiDiscrete actions (PPO, A2C)
    setting: str = "oracle-easier"  # who answers non-simple subquestions: see the module docstring
    features: str = "tokens"  # "tokens" (TokenExtractor) or "flat" (SB3's default)
    d_embed: int = 64  # TokenExtractor width
    num_envs: int = 64  # many envs, short rollouts: fewer, larger policy calls
    rollout_steps: int = 16  # environment steps per env per rollout
    minibatch: int = 256  # PPO
    epochs: int = 4  # PPO
    gamma: float = 1.0  # episodes are a few steps long and paid only at the end
    ent_coef: float = 0.0  # an entropy bonus over ~9 token slots outweighs the 0/1 reward: it pays for asking
    algo_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the algorithm as is

    def __post_init__(self) -> None:
        normalise_floats(self)
        # the answerer X is not used: its model settings are not written out
        self.model_overrides = dict(self.model_overrides)

    def check(self) -> None:
        super().check()
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {list(SETTINGS)}, got {self.setting!r}")
        if self.features not in ("tokens", "flat"):
            raise ValueError(f"features must be 'tokens' or 'flat', got {self.features!r}")
        if self.curriculum != "none":
            raise ValueError("the RL methods train on the env's own question distribution: --curriculum none")
        algo = getattr(stable_baselines3, self.algo, None)
        if not (isinstance(algo, type) and issubclass(algo, OnPolicyAlgorithm)):
            # the action space is MultiDiscrete (DQN, SAC, TD3, DDPG refuse it) and the loop
            # trains in rollouts of `rollout_steps`: on-policy algorithms only
            accepted = ", ".join(on_policy_algorithms())
            raise ValueError(f"algo must be an on-policy SB3 algorithm ({accepted}), got {self.algo!r}")
        for name in ("num_envs", "rollout_steps", "minibatch", "epochs", "d_embed"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")


def on_policy_algorithms() -> list[str]:
    """The stable_baselines3 algorithms `--algo` accepts (those that learn from rollouts)."""
    return sorted(
        name
        for name in stable_baselines3.__all__
        if isinstance(cls := getattr(stable_baselines3, name), type) and issubclass(cls, OnPolicyAlgorithm)
    )


@dataclass
class A2CConfig(RLConfig):
    algo: str = "A2C"
    rollout_steps: int = 8
    lr: float = 7e-4


class TokenExtractor(BaseFeaturesExtractor):
    """Features for token observations: embed every token, mix each fact's and each transcript
    line's tokens (with their positions) into one vector, and let the question attend over facts
    and transcript. Element names are per-episode labels, so what matters is which tokens are
    equal; embeddings keep token identity (a flat MLP over raw ids does not)."""

    def __init__(self, observation_space: spaces.Dict, d: int = 64, heads: int = 4, layers: int = 2) -> None:
        facts, question = observation_space["facts"], observation_space["question"]
        subq, suba = observation_space["sub_questions"], observation_space["sub_answers"]
        vocab = int(facts.high.max()) + 1
        budget, lq = subq.shape
        la = suba.shape[1]
        num_asked = int(observation_space["num_asked"].n)
        super().__init__(observation_space, features_dim=3 * d + num_asked)
        self.embed = nn.Embedding(vocab, d)
        self.fact_role = nn.Parameter(torch.randn(facts.shape[1], d) * 0.02)
        self.question_role = nn.Parameter(torch.randn(question.shape[0], d) * 0.02)
        self.line_role = nn.Parameter(torch.randn(lq + la, d) * 0.02)
        self.slot = nn.Parameter(torch.randn(budget, d) * 0.02)
        self.fact_mix = nn.Linear(facts.shape[1] * d, d)
        self.question_mix = nn.Linear(question.shape[0] * d, d)
        self.line_mix = nn.Linear((lq + la) * d, d)
        self.attend = nn.ModuleList(nn.MultiheadAttention(d, heads, batch_first=True) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(layers))

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        facts = obs["facts"].long()  # SB3 hands Box observations over as floats
        question = obs["question"].long()
        lines = torch.cat([obs["sub_questions"].long(), obs["sub_answers"].long()], dim=-1)
        b = facts.shape[0]
        f = self.fact_mix((self.embed(facts) + self.fact_role).flatten(2))  # (B, F, d)
        t = self.line_mix((self.embed(lines) + self.line_role).flatten(2)) + self.slot  # (B, S, d)
        q = self.question_mix((self.embed(question) + self.question_role).reshape(b, -1))  # (B, d)
        memory = torch.cat([f, t], dim=1)
        pad = torch.cat([facts.eq(0).all(-1), lines.eq(0).all(-1)], dim=1)
        pad[:, 0] = False  # never attend to nothing
        x = q[:, None, :]
        for attend, norm in zip(self.attend, self.norms, strict=True):
            x = x + attend(norm(x), memory, memory, key_padding_mask=pad, need_weights=False)[0]
        asked = obs["num_asked"].reshape(b, -1)  # one-hot (B, budget + 1)
        transcript = (t * (~lines.eq(0).all(-1))[..., None]).sum(1)  # what was asked and answered
        return torch.cat([q, x[:, 0], transcript, asked], dim=-1)


class BudgetIsFinal(gym.Wrapper):
    """The env truncates an episode whose agent asks past its subquestion budget (reward 0). SB3
    treats truncation as a time limit and bootstraps the value of the state it cut, so asking
    until the budget runs out would look as good as answering; for training it is made final."""

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if truncated:
            info = {**info, "out_of_budget": True}
        return obs, reward, terminated or truncated, False, info


class EpisodeCounter(BaseCallback):
    """Counts finished episodes and the answers scored (episodes ended by an answer, not by the
    subquestion budget) during a rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.episodes = self.answers = self.correct = 0

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
            if done:
                self.episodes += 1
                self.answers += not info.get("out_of_budget", False)
                self.correct += bool(info.get("is_correct", False))
        return True


def env_id(task: str) -> str:
    return f"Amp/{task}-v0"


def make_eval_env(cfg: RLConfig) -> gym.vector.VectorEnv:
    """The vector env evaluation plays: one sub-env per held-out episode."""
    return gym.make_vec(
        env_id(cfg.task),
        num_envs=cfg.eval_contexts * cfg.eval_questions_per_context,
        vectorization_mode="vector_entry_point",
        size=cfg.size,
        answerer=cfg.setting,
    )


def make_agent(cfg: RLConfig, env: gym.vector.VectorEnv | Any) -> Any:
    """The SB3 agent `cfg` names, on `env`."""
    algo_cls = getattr(stable_baselines3, cfg.algo)
    kwargs: dict[str, Any] = {
        "n_steps": cfg.rollout_steps,
        "learning_rate": cfg.lr,
        "gamma": cfg.gamma,
        "ent_coef": cfg.ent_coef,
    }
    if cfg.algo == "PPO":
        kwargs.update(batch_size=min(cfg.minibatch, cfg.num_envs * cfg.rollout_steps), n_epochs=cfg.epochs)
    if cfg.features == "tokens":
        kwargs["policy_kwargs"] = {
            "features_extractor_class": TokenExtractor,
            "features_extractor_kwargs": {"d": cfg.d_embed},
        }
    kwargs.update(cfg.algo_kwargs)
    return algo_cls("MultiInputPolicy", env, seed=cfg.seed, device=cfg.device, verbose=0, **kwargs)


def rebuild_policy(cfg: TrainConfig) -> nn.Module:
    """An untrained policy of the shape `cfg` trains (`amp verify` loads the saved weights into it)."""
    assert isinstance(cfg, RLConfig)
    env_kwargs = {"size": cfg.size, "answerer": cfg.setting, "render_mode": None}
    env = make_vec_env(env_id(cfg.task), n_envs=1, seed=cfg.seed, env_kwargs=env_kwargs)
    return make_agent(cfg, env).policy


def evaluate_trained_policy(cfg: TrainConfig, policy: nn.Module) -> dict[str, Any]:
    """The RL methods' evaluation (fixed seeded episodes), for `amp verify`."""
    assert isinstance(cfg, RLConfig)
    return evaluate_policy(policy, make_eval_env(cfg))


VERIFY_HOOKS = {"rebuild": rebuild_policy, "evaluate": evaluate_trained_policy}


def evaluate_saved_agent(cfg: RLConfig, path: str | Path | io.BytesIO) -> dict[str, Any]:
    """`amp eval` for the RL methods: load a saved agent (a file, or the bytes a checkpoint holds)
    and re-score it."""
    agent = getattr(stable_baselines3, cfg.algo).load(path, device="cpu")
    return evaluate_policy(agent.policy, make_eval_env(cfg))


class RLTrainer(Trainer):
    """The shared Trainer (run folder, curve, result file, time budget, Ctrl-C) around an SB3 agent:
    a step is one rollout and update, evaluation plays the policy on fixed seeded episodes."""

    def __init__(self, method: str, cfg: RLConfig, **options: Any) -> None:
        super().__init__(method, cfg, **options)
        env_kwargs = {"size": cfg.size, "answerer": cfg.setting}
        self.env = make_vec_env(  # render_mode: SB3 would ask for "rgb_array" otherwise
            env_id(cfg.task),
            n_envs=cfg.num_envs,
            seed=cfg.seed,
            env_kwargs={**env_kwargs, "render_mode": None},
            wrapper_class=BudgetIsFinal,
        )
        self.eval_env = make_eval_env(cfg)
        self.agent = make_agent(cfg, self.env)
        self.model = self.agent.policy  # what the checkpoint and the weights file hold
        self.counter = EpisodeCounter()

    def checkpoint(self) -> None:
        """Everything a resume needs to go on exactly as if never stopped, in one atomic file: the
        agent (policy, optimiser, timesteps), the training envs mid-episode with their random
        generators, the observation the next rollout starts from, and numpy's global RNG (the
        Run adds torch's). `sb3_agent.zip` beside it is the agent alone, loadable with stable-baselines3."""
        buffer = io.BytesIO()
        self.agent.save(buffer)
        agent = buffer.getvalue()
        self.run.save_checkpoint(
            {
                "step": self.step,
                "questions_seen": self.questions_seen,
                "agent": agent,
                "envs": cloudpickle.dumps(self.env),
                "last_obs": self.agent._last_obs,
                "last_episode_starts": self.agent._last_episode_starts,
                "numpy_global_rng": np.random.get_state(),  # noqa: NPY002 (SB3 shuffles minibatches with it)
                "last_eval": self.last_eval,
                "commit": self.run.commit,
            }
        )
        atomic_write_bytes(agent, self.run.dir / "sb3_agent.zip")

    def restore_state(self, state: dict[str, Any]) -> None:
        self.env.close()
        self.env = cloudpickle.loads(state["envs"])
        algo = getattr(stable_baselines3, self.cfg.algo)
        self.agent = algo.load(io.BytesIO(state["agent"]), env=self.env, device=self.cfg.device)
        self.agent._last_obs = state["last_obs"]
        self.agent._last_episode_starts = state["last_episode_starts"]
        self.model = self.agent.policy
        # building the loaded agent drew from torch's RNG: put back the state the Run restored
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_global_rng"])  # noqa: NPY002

    def evaluate(self, metrics: dict[str, float]) -> None:
        result = evaluate_policy(self.agent.policy, self.eval_env)
        self.last_eval = result
        self.run.log(
            {
                "step": self.step,
                "questions": self.questions_seen,
                "environment_steps": self.agent.num_timesteps,
                "wall_seconds": round(self.run.wall(), 2),
                "accuracy": result["accuracy"],
                "unknown_rate": result["unknown_rate"],
                "truncated_rate": result["truncated_rate"],
                **{k: float(v) for k, v in metrics.items()},
                "per_difficulty": {str(k): v["accuracy"] for k, v in result["per_difficulty"].items()},
            }
        )


def train_step(t: Trainer) -> dict[str, float]:
    assert isinstance(t, RLTrainer) and isinstance(t.cfg, RLConfig)
    cfg, counter = t.cfg, t.counter
    before = (t.agent.num_timesteps, counter.episodes, counter.answers, counter.correct)
    t.agent.learn(cfg.num_envs * cfg.rollout_steps, callback=counter, reset_num_timesteps=False)
    steps, episodes, answers, correct = (
        now - then
        for now, then in zip(
            (t.agent.num_timesteps, counter.episodes, counter.answers, counter.correct), before, strict=True
        )
    )
    t.count("environment_steps", steps)
    t.count("episodes", episodes)
    t.count("reward_queries", answers)
    return {"train_reward": correct / max(episodes, 1), "episodes": float(episodes), "questions": episodes}


@torch.no_grad()
def evaluate_policy(policy: Any, env: gym.vector.VectorEnv, seed: int = EVAL_SEED) -> dict[str, Any]:
    """Accuracy of the deterministic policy on the first episode of every sub-env after
    `reset(seed=seed)`: a fixed held-out set of episodes, the same for every run."""
    obs, _ = env.reset(seed=seed)
    n = env.num_envs
    ended = np.zeros(n, bool)
    correct = np.zeros(n, bool)
    truncated_at_end = np.zeros(n, bool)
    unknown = np.zeros(n, bool)
    difficulty = np.zeros(n, np.int64)
    while not ended.all():
        actions, _ = policy.predict(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(actions)
        new = (terminated | truncated) & ~ended
        if not new.any():
            continue
        correct[new] = info["is_correct"][new]
        difficulty[new] = info["difficulty"][new]
        truncated_at_end[new] = truncated[new]
        unknown[new] = terminated[new] & (actions[new, 1] == UNKNOWN)
        ended |= new
    per_difficulty = {
        int(d): {"accuracy": float(correct[difficulty == d].mean()), "count": int((difficulty == d).sum())}
        for d in np.unique(difficulty)
    }
    return {
        "accuracy": float(correct.mean()),
        "per_difficulty": per_difficulty,
        "unknown_rate": float(unknown.mean()),
        "truncated_rate": float(truncated_at_end.mean()),
    }
