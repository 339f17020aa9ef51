"""The Gymnasium environments: API conformance, the expert, seeding, bad input, vector envs."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import amp_envs
from amp_envs import TASKS, AmpEnv, AmpVectorEnv, ExpertPolicy, make_task

ENV_IDS = sorted(amp_envs.ENV_IDS.values())
AUX_KINDS = {"UnionFind": ("parent", "depth"), "ShortestPath": ("step",)}


def play(env: gym.Env, policy, episodes: int, seed: int = 0) -> tuple[float, list[dict]]:
    """Mean reward of `policy` over `episodes` episodes, and the final infos."""
    total, infos = 0.0, []
    obs, _ = env.reset(seed=seed)
    for _ in range(episodes):
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total += reward
            done = terminated or truncated
        infos.append(info)
        obs, _ = env.reset()
    return total / episodes, infos


def forward_question(env: gym.Env):
    """The cheat the default answerer must defeat: ask the episode's own question, answer with
    whatever comes back."""
    task = env.unwrapped.task

    def policy(obs):
        action = np.zeros(env.action_space.shape, np.int64)
        if obs["num_asked"] == 0:
            action[1 : 1 + task.question_len] = obs["question"]
        else:
            action[0] = 1
            action[1 : 1 + task.answer_len] = obs["sub_answers"][0]
        return action

    return policy


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_env_checker(env_id):
    env = gym.make(env_id, size=8).unwrapped
    gym_check_env(env, skip_render_check=False)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_env_checker(env_id):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    sb3_check_env(gym.make(env_id, size=8).unwrapped, warn=False)


def test_make_without_prior_import():
    code = (
        "import gymnasium as gym; env = gym.make('amp_envs:Amp/PermutationPower-v0', size=8); "
        "obs, info = env.reset(seed=0); print(obs['question'].shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(8,)"


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("size", [2, 4, 8, 16, 64, 256])
def test_expert_with_oracle_easier_solves_every_episode(env_id, size):
    env = gym.make(env_id, size=size)
    mean, infos = play(env, ExpertPolicy(env), episodes=60, seed=size)
    assert mean == 1.0
    assert all(i["is_correct"] for i in infos)
    assert max(i["num_subquestions"] for i in infos) <= env.unwrapped.task.max_subquestions


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_forwarding_the_question_scores_nothing(env_id):
    env = gym.make(env_id, size=16)
    mean, _ = play(env, forward_question(env), episodes=100)
    assert mean == 0.0
    # ...whereas with the leaking "oracle" answerer the same cheat wins: the default matters.
    leaky = gym.make(env_id, size=16, answerer="oracle")
    assert play(leaky, forward_question(leaky), episodes=50)[0] == 1.0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_random_policy_scores_low(env_id):
    env = gym.make(env_id, size=16)
    env.action_space.seed(0)
    mean, _ = play(env, lambda obs: env.action_space.sample(), episodes=200)
    assert mean < 0.1


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_lookup_only_stops_the_expert(env_id):
    env = gym.make(env_id, size=16, answerer="lookup-only")
    mean, _ = play(env, ExpertPolicy(env), episodes=100)
    assert mean < 0.5


@pytest.mark.parametrize("task,kinds", sorted(AUX_KINDS.items()))
def test_auxiliary_question_kinds(task, kinds):
    for kind in kinds:
        env = gym.make(f"Amp/{task}-v0", size=16, question_kinds=(kind,), answerer="oracle")
        mean, infos = play(env, ExpertPolicy(env), episodes=50)
        assert mean == 1.0
        assert {i["question_kind"] for i in infos} == {kind}


def test_learner_as_answerer():
    """A batched callable answers the non-simple subquestions: here a wrong one, then a right one."""
    # A learner that always says `?`: only k = 2, 3 (lookups alone) can still be solved.
    env = gym.make("Amp/PermutationPower-v0", size=8, answerer=lambda facts, q: np.ones(len(q), np.int64))
    assert play(env, ExpertPolicy(env), episodes=60)[0] < 0.2

    calls = []

    def truthful(facts, questions):
        calls.append(len(questions))
        task = env.unwrapped.task
        ctx = env.unwrapped.episodes.ctx
        assert np.array_equal(facts[0], ctx.facts[0])
        return task.ground_truth(ctx, np.zeros(len(questions), np.int64), questions)

    env = gym.make("Amp/PermutationPower-v0", size=8, answerer=truthful)
    assert play(env, ExpertPolicy(env), episodes=30)[0] == 1.0
    assert sum(calls) > 0


def test_info_reveals_truth_only_at_the_end():
    env = gym.make("Amp/ShortestPath-v0", size=16)
    obs, info = env.reset(seed=3)
    assert set(info) == {"num_subquestions"}
    expert = ExpertPolicy(env)
    while True:
        obs, reward, terminated, truncated, info = env.step(expert(obs))
        if terminated or truncated:
            break
        assert set(info) == {"num_subquestions"}
    assert {"ground_truth", "is_correct", "difficulty", "question_kind"} <= set(info)


def test_subquestion_cost_and_budget_truncation():
    env = gym.make("Amp/WildcardSearch-v0", size=8, subquestion_cost=0.25)
    obs, _ = env.reset(seed=0)
    action = np.zeros(env.action_space.shape, np.int64)
    action[1 : 1 + len(obs["question"])] = obs["question"]
    rewards = []
    for _ in range(env.unwrapped.task.max_subquestions):
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        assert not (terminated or truncated)
    obs, reward, terminated, truncated, info = env.step(action)
    assert rewards == [-0.25] * len(rewards)
    assert truncated and not terminated and reward == 0.0 and info["is_correct"] is False


def test_bad_actions_raise_clear_errors():
    env = gym.make("Amp/PermutationPower-v0", size=8).unwrapped
    env.reset(seed=0)
    vocab = len(env.task.vocab)
    with pytest.raises(ValueError, match="not in the action space"):
        env.step(np.full(env.action_space.shape, vocab, np.int64))
    with pytest.raises(ValueError, match="not in the action space"):
        env.step(np.array([2] + [0] * (env.action_space.shape[0] - 1)))
    with pytest.raises(ValueError, match="not in the action space"):
        env.step(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="not in the action space"):
        env.step(np.zeros(env.action_space.shape, np.float64))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_nonsense_subquestions_get_unknown(env_id):
    env = gym.make(env_id, size=8)
    env.reset(seed=1)
    action = np.zeros(env.action_space.shape, np.int64)
    action[1:] = 1  # all `?` tokens: well inside the space, meaningless as a question
    obs, reward, terminated, truncated, _ = env.step(action)
    assert obs["sub_answers"][0].tolist() == [1] * env.unwrapped.task.answer_len
    assert reward == 0.0 and not terminated and not truncated


def test_step_after_end_is_an_error():
    env = gym.make("Amp/WildcardSearch-v0", size=8)
    obs, _ = env.reset(seed=0)
    action = np.zeros(env.action_space.shape, np.int64)
    action[0] = 1
    env.step(action)
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(action)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"size": 0}, "size"),
        ({"size": 2.5}, "size"),
        ({"size": 8, "max_size": 4}, "max_size"),
        ({"answerer": "ground-truth"}, "answerer"),
        ({"max_subquestions": -1}, "max_subquestions"),
        ({"subquestion_cost": -1.0}, "subquestion_cost"),
        ({"question_kinds": ("nonsense",)}, "question kinds"),
        ({"render_mode": "rgb_array"}, "render_mode"),
        ({"size": 10**6}, "size must be at most 4096"),
        ({"size": 4097}, "size must be at most 4096"),
        ({"size": 8, "max_size": 10**9}, "max_size must be at most 4096"),
    ],
)
def test_invalid_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AmpEnv("PermutationPower", **kwargs)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_a_size_beyond_the_largest_is_refused_before_anything_is_allocated(task):
    """size=10**6 used to raise MemoryError (30 GiB) or run for minutes: now a ValueError at once."""
    for make in (lambda **k: AmpEnv(task, **k), lambda **k: AmpVectorEnv(task, num_envs=2, **k)):
        with pytest.raises(ValueError, match=f"size must be at most {TASKS[task].max_size_limit}"):
            make(size=10**6)


def test_the_first_reset_at_the_largest_size_draws_few_contexts():
    """Contexts come in chunks of 4096 // size (64 up to the paper's size 64): one shortest-path
    context at 4096 instead of 64 (4.4 GB and 14 s before)."""
    from amp_envs.core import chunk_contexts

    assert [chunk_contexts(n) for n in (2, 8, 64, 65, 256, 4096)] == [64, 64, 64, 63, 16, 1]
    env = AmpEnv("ShortestPath", size=4096)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs) and len(env.episodes._pool[1]) == 1


def test_render_before_reset_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r"call reset\(\) before render\(\)"):
        AmpEnv("UnionFind", size=4, render_mode="ansi").render()
    with pytest.raises(RuntimeError, match=r"call reset\(\) before render\(\)"):
        AmpVectorEnv("UnionFind", num_envs=2, size=4, render_mode="ansi").render()


@pytest.mark.parametrize("options", [{"difficulty": 1}, {"question": [1, 2]}, {"seed": 3}])
def test_reset_options_are_refused_rather_than_ignored(options):
    for env in (AmpEnv("UnionFind", size=4), AmpVectorEnv("UnionFind", num_envs=2, size=4)):
        with pytest.raises(ValueError, match="reset options .* are not supported"):
            env.reset(seed=0, options=options)
        env.reset(seed=0, options={})  # none given: fine
        env.reset(seed=0, options=None)


def test_a_task_instance_is_used_as_given():
    task = make_task("UnionFind", 8)
    assert AmpEnv(task).task is task and AmpVectorEnv(task, num_envs=2).task is task
    with pytest.raises(ValueError, match="not both"):
        AmpEnv(task, size=16)


def test_unknown_task_and_option():
    with pytest.raises(ValueError, match="unknown task"):
        AmpEnv("Sudoku")
    with pytest.raises(TypeError):
        AmpEnv("PermutationPower", colour="red")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_render_ansi_shows_facts_question_and_transcript(env_id):
    env = gym.make(env_id, size=8, render_mode="ansi")
    obs, _ = env.reset(seed=0)
    expert = ExpertPolicy(env)
    done = False
    while not done:
        obs, _, terminated, truncated, _ = env.step(expert(obs))
        done = terminated or truncated
    text = env.render()
    assert "Question:" in text and "1. ask" in text and "(correct)" in text


def rollout(env, seed: int, steps: int):
    """Observations, rewards and infos of `steps` steps of a seeded random policy."""
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    trace = [(obs, info)]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        trace.append((obs, reward, terminated, truncated, info))
        if np.ndim(terminated) == 0 and (terminated or truncated):
            obs, info = env.reset()
            trace.append((obs, info))
    return trace


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeding_single_env(env_id):
    a = rollout(gym.make(env_id, size=8), seed=7, steps=100)
    b = rollout(gym.make(env_id, size=8), seed=7, steps=100)
    c = rollout(gym.make(env_id, size=8), seed=8, steps=100)
    assert same(a, b)
    assert not same(a, c)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeding_vector_env(env_id):
    def make():
        return gym.make_vec(env_id, num_envs=4, vectorization_mode="vector_entry_point", size=8)

    assert same(rollout(make(), seed=3, steps=100), rollout(make(), seed=3, steps=100))


def test_seeding_across_processes():
    code = (
        "import gymnasium as gym, numpy as np, amp_envs\n"
        "env = gym.make('Amp/UnionFind-v0', size=16); env.action_space.seed(5)\n"
        "obs, _ = env.reset(seed=5); acc = [obs['facts'].sum(), obs['question'].sum()]\n"
        "for _ in range(100):\n"
        "    obs, r, te, tr, info = env.step(env.action_space.sample())\n"
        "    acc += [obs['sub_answers'].sum(), r]\n"
        "    if te or tr: obs, _ = env.reset(); acc.append(obs['question'].sum())\n"
        "print(acc)\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True) for _ in "ab"
    ]
    assert runs[0].stdout == runs[1].stdout and len(runs[0].stdout) > 100


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_native_vector_env_expert_and_autoreset(env_id):
    envs = gym.make_vec(env_id, num_envs=16, vectorization_mode="vector_entry_point", size=8)
    assert isinstance(envs.unwrapped, AmpVectorEnv)
    expert = ExpertPolicy(envs)
    obs, _ = envs.reset(seed=0)
    finished, rewards = 0, 0.0
    for _ in range(60):
        obs, reward, terminated, truncated, info = envs.step(expert(obs))
        assert envs.observation_space.contains(obs)
        ended = terminated | truncated
        finished += ended.sum()
        rewards += reward.sum()
        if ended.any():
            assert info["_is_correct"].tolist() == ended.tolist()
            assert info["is_correct"][ended].all()
    assert finished > 16 and rewards == finished


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gymnasium_wrappers_of_the_single_env(mode):
    envs = gym.make_vec("Amp/WildcardSearch-v0", num_envs=2, vectorization_mode=mode, size=8)
    expert = ExpertPolicy(envs.unwrapped.env_fns[0]() if mode == "async" else envs.envs[0])
    obs, _ = envs.reset(seed=0)
    total = 0.0
    for _ in range(12):
        obs, reward, terminated, truncated, _ = envs.step(expert(obs))
        total += reward.sum()
    envs.close()
    assert total >= 4


@pytest.mark.parametrize("env_id", ENV_IDS)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), data=st.data())
def test_fuzz_random_actions(env_id, seed, data):
    env = gym.make(env_id, size=data.draw(st.sampled_from([2, 4, 8, 13])))
    obs, _ = env.reset(seed=seed)
    nvec = env.action_space.nvec
    for _ in range(30):
        assert env.observation_space.contains(obs)
        action = np.array([data.draw(st.integers(0, int(n) - 1)) for n in nvec], dtype=np.int64)
        obs, reward, terminated, truncated, info = env.step(action)
        assert reward in (0.0, 1.0)
        if terminated or truncated:
            assert env.observation_space.contains(obs)
            obs, _ = env.reset()


def test_ppo_smoke():
    from stable_baselines3 import PPO

    env = gym.make("Amp/WildcardSearch-v0", size=4)
    model = PPO("MultiInputPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=128)
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action)
