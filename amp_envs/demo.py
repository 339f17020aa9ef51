"""The main demo: build every environment, let the expert H play a few episodes, show the
transcripts, then run the engine benchmark.

    python -m amp_envs.demo [--size 8] [--episodes 2] [--no-bench]
"""

from __future__ import annotations

import argparse

import gymnasium as gym

import amp_envs
from amp_envs.expert import ExpertPolicy


def show_expert_episodes(size: int, episodes: int, seed: int = 0) -> None:
    for env_id in amp_envs.ENV_IDS.values():
        env = gym.make(env_id, size=size, render_mode="ansi")
        expert = ExpertPolicy(env)
        solved = 0
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            done = False
            while not done:
                obs, reward, terminated, truncated, info = env.step(expert(obs))
                done = terminated or truncated
            solved += int(info["is_correct"])
            print(f"=== {env_id}, episode {episode} (difficulty {info['difficulty']}) ===")
            print(env.render())
            print()
        print(f"--> expert H with the default 'oracle-easier' answerer: {solved}/{episodes} correct\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=8, help="context size of the shown episodes")
    parser.add_argument("--episodes", type=int, default=2, help="episodes per environment")
    parser.add_argument("--no-bench", action="store_true", help="skip the engine benchmark")
    args = parser.parse_args(argv)
    show_expert_episodes(args.size, args.episodes)
    if not args.no_bench:
        from amp_envs import bench

        bench.main(["--quick"])


if __name__ == "__main__":
    main()
