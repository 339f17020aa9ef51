"""The comparison methods: Expert Iteration (`exit`) and reinforcement learning (`ppo`, `a2c`)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, TINY_RUN, stop_after

import amp_envs  # noqa: F401  (registers the envs)
from amp_envs.expert import ExpertPolicy
from amp_envs.tasks import TASKS, make_task
from baselines.cli import eval_main
from baselines.cli import main as amp_main
from baselines.common import FactsAndLookups, amplify, build_model
from baselines.expert_iteration import ExItConfig, score
from baselines.methods import train
from baselines.results import load_result, verify
from baselines.rl import BudgetIsFinal, RLConfig, evaluate_policy

TINY_EXIT = TINY_RUN | dict(
    size=5, steps=2, eval_every=2, checkpoint_every=2, generate_contexts=4, replay_contexts=16
)
TINY_RL = [
    "--size", "4", "--steps", "2", "--eval-every", "1", "--num-envs", "2", "--rollout-steps", "8",
    "--minibatch", "8", "--d-embed", "16", "--eval-contexts", "4", "--eval-questions-per-context", "4",
]  # fmt: skip


def check_result_file(path, method: str, task: str) -> dict:
    result = load_result(path)  # the schema every result file is validated against
    assert result["method"] == method and result["task"] == task and result["stop_reason"] == "steps"
    assert 0.0 <= result["final"]["accuracy"] <= 1.0
    assert result["curve"] and result["curve"][-1]["step"] == result["steps"]
    return result


@pytest.mark.parametrize("name", sorted(TASKS))
def test_exit_trains_and_writes_a_result_file(name, tmp_path):
    cfg = ExItConfig(task=name, **TINY_EXIT)
    trainer = train("exit", cfg, runs_dir=tmp_path / "runs", results_dir=tmp_path / "results", quiet=True)
    result = check_result_file(trainer.result_path, "exit", name)
    counts = result["counts"]
    # every searched question has at least its amplified answer and X's answer scored (if distinct)
    assert counts["searched_questions"] == cfg.steps * cfg.generate_contexts * cfg.questions_per_context
    assert counts["searched_questions"] <= counts["reward_queries"] <= 6 * counts["searched_questions"]
    assert "ground_truth_labels" not in counts


def test_candidates_are_scored_once_each_and_duplicates_share_the_reward():
    class Rigged:
        queries = 0

        def correct(self, ctx, ctx_idx, q, answers, truth=None):
            self.queries += len(answers)
            return np.isin(answers[:, 0], [7, 2])

    task = Rigged()
    candidates = np.array([[5, 5, 7, 7], [2, 3, 2, 9]])
    rewarded, queries = score(task, None, np.zeros(2, np.int64), np.zeros((2, 3), np.int64), candidates)
    assert queries == task.queries == 5  # {5, 7} and {2, 3, 9}
    assert rewarded.tolist() == [[False, False, True, True], [True, False, True, False]]


def rig(monkeypatch, rewarded_if):
    """Replace the training task's reward with `rewarded_if(answers) -> bool`; returns a record of
    every answer it was asked to score."""
    asked: list[np.ndarray] = []

    def on_start(trainer):
        def correct(ctx, ctx_idx, q, answers, truth=None):
            asked.append(np.asarray(answers)[:, 0].copy())
            return rewarded_if(np.asarray(answers)[:, 0])

        monkeypatch.setattr(trainer.train_task(), "correct", correct)

    return asked, on_start


def test_exit_targets_come_only_from_rewarded_candidates(tmp_path, monkeypatch):
    """A rigged reward pays only answers whose token is even: every target X is trained on is
    even, although the true answers and X's own guesses are all kinds of tokens."""
    asked, on_start = rig(monkeypatch, lambda a: a % 2 == 0)
    cfg = ExItConfig(task="PermutationPower", **{**TINY_EXIT, "steps": 6})
    trainer = train("exit", cfg, runs_dir=tmp_path, quiet=True, on_start=on_start)
    buffer = trainer.extra["buffer"]
    scored = np.concatenate(asked)
    assert len(scored) == trainer.run.counts["reward_queries"]
    assert (scored % 2 == 1).any() and (scored % 2 == 0).any()  # both kinds were proposed
    assert buffer.size > 0
    assert np.all(buffer.targets[: buffer.size] % 2 == 0)


def test_exit_learns_nothing_when_nothing_is_rewarded(tmp_path, monkeypatch):
    asked, on_start = rig(monkeypatch, lambda a: np.zeros(len(a), bool))
    cfg = ExItConfig(task="UnionFind", **TINY_EXIT)
    trainer = train("exit", cfg, runs_dir=tmp_path, quiet=True, on_start=on_start)
    torch.manual_seed(cfg.seed)  # the trainer's initial weights
    untouched = build_model(cfg, make_task("UnionFind", cfg.size))
    assert trainer.extra["buffer"].size == 0 and len(asked) == 2 * cfg.steps  # greedy, then the search
    for a, b in zip(trainer.model.parameters(), untouched.parameters(), strict=True):
        assert torch.equal(a, b)


def test_sampled_amplification_is_seeded_and_greedy_is_unchanged():
    task = make_task("PermutationPower", 8)
    model = build_model(ExItConfig(model_overrides=TINY_MODEL), task)
    rng = np.random.default_rng(0)
    ctx = task.generate(rng, 4)
    q = task.sample_questions(ctx, rng, ctx_idx=np.repeat(np.arange(4), 8))
    view = FactsAndLookups(task, ctx)
    greedy = [amplify(task, model, view, q, np.random.default_rng(s))[0] for s in (1, 2)]
    sampled = [amplify(task, model, view, q, np.random.default_rng(s), temperature=5.0)[0] for s in (1, 1, 2)]
    assert np.array_equal(greedy[0], greedy[1])  # temperature 0 draws nothing random
    assert np.array_equal(sampled[0], sampled[1]) and not np.array_equal(sampled[0], sampled[2])


@pytest.mark.parametrize("name", sorted(TASKS))
def test_ppo_trains_through_the_cli_and_writes_a_result_file(name, tmp_path):
    results = tmp_path / "results"
    amp_main(["train", "--method", "ppo", "--task", name, *TINY_RL, "--quiet"]
             + ["--runs-dir", str(tmp_path / "runs"), "--results-dir", str(results)])  # fmt: skip
    (path,) = results.glob(f"{name}-n4-ppo-s0-*.json")
    result = check_result_file(path, "ppo", name)
    assert result["counts"]["environment_steps"] == 2 * 2 * 8
    assert result["curve"][-1]["environment_steps"] == 32
    assert result["config"]["algo"] == "PPO" and result["config"]["setting"] == "oracle-easier"
    assert sum(v["count"] for v in result["final"]["per_difficulty"].values()) == 16
    if name == "PermutationPower":  # `amp eval` re-scores the saved agent to the same accuracy
        checkpoint = str(tmp_path / "runs" / result["checkpoint"])
        assert eval_main([checkpoint])["accuracy"] == result["final"]["accuracy"]
        # ...and `amp verify` rebuilds the policy from the committed-size weights file alone
        assert (tmp_path / "weights" / (path.stem + ".safetensors")).exists()
        outcome = verify(path, record=False)
        assert outcome["ok"] and outcome["accuracy"] == result["final"]["accuracy"], outcome


@pytest.mark.parametrize(
    "options",
    [["--method", "a2c"], ["--method", "ppo", "--features", "flat", "--setting", "lookup-only"]],
)
def test_other_algorithms_features_and_settings_run(options, tmp_path):
    amp_main(["train", *options, "--task", "WildcardSearch", *TINY_RL, "--quiet"]
             + ["--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path)])  # fmt: skip
    (path,) = tmp_path.glob("WildcardSearch-n4-*.json")
    assert json.loads(path.read_text())["counts"]["environment_steps"] == 32


def test_a_resumed_ppo_run_continues_exactly(tmp_path):
    """Stopped after 2 rollouts and resumed to 4, PPO ends with the same policy, curve and counts
    as a run of 4 straight: the checkpoint holds the envs mid-episode and the RNGs."""
    tiny = dict(task="UnionFind", size=4, eval_every=1, num_envs=2, rollout_steps=8, minibatch=8)
    tiny |= dict(d_embed=16, eval_contexts=4, eval_questions_per_context=4, threads=1)

    def run(folder: str, resume: bool = False, on_start=None):
        cfg = RLConfig(steps=4, **tiny)
        return train("ppo", cfg, runs_dir=tmp_path / folder, resume=resume, quiet=True, on_start=on_start)

    straight = run("a")
    assert run("b", on_start=stop_after(2)).step == 2
    resumed = run("b", resume=True)
    assert resumed.step == 4 and resumed.agent.num_timesteps == straight.agent.num_timesteps == 4 * 2 * 8
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    ours, theirs = (json.loads(t.result_path.read_text()) for t in (straight, resumed))
    assert ours["counts"] == theirs["counts"]
    drop = ("wall_seconds",)
    assert [{k: v for k, v in row.items() if k not in drop} for row in ours["curve"]] == [
        {k: v for k, v in row.items() if k not in drop} for row in theirs["curve"]
    ]


def test_bad_rl_configuration_is_refused(tmp_path):
    for bad in (
        {"setting": "oracle"},
        {"features": "pixels"},
        {"algo": "NoSuchAlgo"},
        {"algo": "DQN"},  # off-policy: no MultiDiscrete actions, no rollouts
        {"algo": "get_system_info"},  # in stable_baselines3, not an algorithm
        {"curriculum": "size"},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            train("ppo", RLConfig(**bad), runs_dir=tmp_path)
    with pytest.raises(ValueError, match="A2C, PPO"):  # the message lists what is accepted
        RLConfig(algo="SAC").validate()


class ExpertAgent:
    """H behind SB3's predict() interface."""

    def __init__(self, env) -> None:
        self.expert = ExpertPolicy(env)

    def predict(self, obs, deterministic=True):
        return self.expert(obs), None


@pytest.mark.parametrize(("setting", "expected"), [("oracle-easier", 1.0), ("lookup-only", None)])
def test_rl_evaluation_scores_the_expert_and_is_fixed(setting, expected):
    env = gym.make_vec("Amp/UnionFind-v0", num_envs=64, vectorization_mode="vector_entry_point",
                       size=8, answerer=setting)  # fmt: skip
    first = evaluate_policy(ExpertAgent(env), env)
    assert evaluate_policy(ExpertAgent(env), env) == first
    assert sum(v["count"] for v in first["per_difficulty"].values()) == 64
    if expected is not None:
        assert first["accuracy"] == expected
    else:  # H cannot get its non-simple subquestions answered: it fails on the deep questions
        assert first["accuracy"] < 1.0


def test_running_out_of_subquestions_is_final_for_the_rl_agent():
    """SB3 bootstraps truncated episodes; for the agent the budget's end must be a plain failure."""
    env = BudgetIsFinal(gym.make("Amp/PermutationPower-v0", size=4, max_subquestions=1))
    env.reset(seed=0)
    ask = np.zeros(env.action_space.shape, np.int64)
    assert env.step(ask)[2:4] == (False, False)
    _, reward, terminated, truncated, info = env.step(ask)
    assert (reward, terminated, truncated, info["out_of_budget"]) == (0.0, True, False, True)
