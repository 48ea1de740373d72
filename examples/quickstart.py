"""Quickstart: the pretrained agent learns an env in context (RiverSwim by default), in a plain Gymnasium loop.

    python examples/quickstart.py                       # RiverSwim, 100 episodes, under half a minute
    python examples/quickstart.py --episodes 30 --every 5
    python examples/quickstart.py --env FrozenLake-v1   # any Gymnasium id with finite spaces

There is no training step: ``agent.act(obs)`` picks an action, ``agent.observe(...)`` hands back what
``env.step`` returned, and the agent's statistics (and so its plan) grow with every transition. The script
prints the mean return of each block of ``--every`` episodes, then the greedy policy
(``act(obs, deterministic=True)``) in the states the agent has met, with the env's own action names when
it has them. With an env that has an exact model (every ``icrl/...`` env, and Gymnasium's toy-text envs through
their transition tables) it then prints the greedy policy's exact expected return next to the optimal and the
uniformly random policy's; with any other env, the greedy policy's mean return over ``--eval-episodes`` episodes.

With the shipped weights (icrl-v2.8) on RiverSwim, seeds 0-9 at the default 100 episodes: 10 of 10 end with the
optimal greedy policy (expected return 3.397), as with icrl-v2.7, v2.6, v2.5, v2.4, v2.3 and v2.2. icrl-v2.1 did so on 7 of
10 (seeds 4, 5 and 6 settled for the small early reward, 0.100). Measured 2026-12-01 with
``for s in 0 1 2 3 4 5 6 7 8 9; do python examples/quickstart.py --seed $s; done``.
"""

import argparse

import gymnasium as gym
import numpy as np

from icrl_agent import Agent, solvers
from icrl_agent.env_info import action_names, env_id_arg, env_info, exact_model, make_env, run_episode

SHOWN_STATES = 24
"""The greedy policy is printed for at most this many states."""


def greedy_policy(env: gym.Env, agent: Agent) -> np.ndarray:
    """The agent's greedy action in every state of a ``Discrete`` env, as a one-hot ``[S, A]`` policy."""
    space = env.observation_space
    policy = np.zeros((space.n, agent.n_actions))
    for i in range(space.n):
        policy[i, agent.act(space.start + i, deterministic=True) - agent.action_start] = 1.0
    return policy


def greedy_returns(env: gym.Env, agent: Agent, episodes: int, cap: int) -> list[float]:
    """Returns of ``episodes`` episodes of ``act(obs, deterministic=True)`` (the agent observes nothing)."""
    returns = []
    for _ in range(episodes):
        obs, _ = env.reset()
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
            steps += 1
            total, done = total + float(reward), terminated or truncated or steps >= cap
        returns.append(total)
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--env", type=env_id_arg, default="icrl/RiverSwim-v0",
        help="any Gymnasium id with finite spaces (FrozenLake-v1, CliffWalking-v1, Taxi-v4, icrl/...)",
    )
    parser.add_argument("--episodes", type=int, default=100, help="episodes to learn for")
    parser.add_argument("--every", type=int, default=10, help="print the mean return of each block of this many")
    parser.add_argument("--eval-episodes", type=int, default=20, help="greedy episodes (envs without exact model)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the agent and the env")
    args = parser.parse_args()

    info = env_info(args.env)
    print(info.describe())
    env = make_env(args.env)
    agent = Agent(env.observation_space, env.action_space, seed=args.seed)
    env.reset(seed=args.seed)
    returns = []
    for episode in range(1, args.episodes + 1):
        returns.append(run_episode(agent, env, info.episode_cap))
        if episode % args.every == 0 or episode == args.episodes:
            block = returns[-args.every:]
            print(f"episodes {episode - len(block) + 1:>4}-{episode:<4} mean return {np.mean(block):7.3f}")

    names = action_names(env)
    stats = agent.stats
    shown = [f"{stats.observation(i)}={names[agent.act(stats.observation(i), deterministic=True) - agent.action_start]}"
             for i in range(min(stats.n_states, SHOWN_STATES))]
    more = f" (+{stats.n_states - SHOWN_STATES} more states)" if stats.n_states > SHOWN_STATES else ""
    print(f"greedy policy (observation=action), in the order states were met: {', '.join(shown)}{more}")
    if info.exact:
        model = exact_model(env)
        print(
            f"expected return of the greedy policy {solvers.policy_value(model, greedy_policy(env, agent)):.3f} "
            f"(optimal {info.optimal:.3f}, random {info.random:.3f}); "
            f"{stats.n_transitions} transitions seen"
        )
    else:
        greedy = greedy_returns(env, agent, args.eval_episodes, info.episode_cap)
        print(
            f"mean return of the greedy policy over {args.eval_episodes} episodes {np.mean(greedy):.3f} "
            f"(raw return: {args.env} exposes no exact model); {stats.n_transitions} transitions seen"
        )


if __name__ == "__main__":
    main()
