"""Quickstart: the pretrained agent learns RiverSwim in context, in a plain Gymnasium loop.

    python examples/quickstart.py                       # 100 episodes, under half a minute
    python examples/quickstart.py --episodes 30 --every 5

There is no training step: ``agent.act(obs)`` picks an action, ``agent.observe(...)`` hands back what
``env.step`` returned, and the agent's statistics (and so its plan) grow with every transition. The script
prints the mean return of each block of ``--every`` episodes, then the greedy policy
(``act(obs, deterministic=True)``) for every state and its exact expected return, next to the optimal
and the uniformly random policy's, computed from the env's true model.
"""

import argparse

import gymnasium as gym
import numpy as np

import icrl_agent  # noqa: F401  (registers the icrl/... envs)
from icrl_agent import Agent, solvers

ACTION_NAMES = {0: "left", 1: "right"}


def run_episode(env: gym.Env, agent: Agent) -> float:
    """One episode of act / step / observe; its undiscounted return."""
    obs, _ = env.reset()
    total, done = 0.0, False
    while not done:
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        agent.observe(obs, action, reward, next_obs, terminated, truncated)
        total += float(reward)
        obs, done = next_obs, terminated or truncated
    return total


def greedy_policy(env: gym.Env, agent: Agent) -> np.ndarray:
    """The agent's greedy action in every state of the env, as a one-hot ``[S, A]`` policy."""
    n_states, n_actions = env.observation_space.n, env.action_space.n
    policy = np.zeros((n_states, n_actions))
    for state in range(n_states):
        policy[state, agent.act(state, deterministic=True)] = 1.0
    return policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="icrl/RiverSwim-v0", help="a registered env with Discrete observations")
    parser.add_argument("--episodes", type=int, default=100, help="episodes to learn for")
    parser.add_argument("--every", type=int, default=10, help="print the mean return of each block of this many")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = gym.make(args.env)
    agent = Agent(env.observation_space, env.action_space, seed=args.seed)
    env.reset(seed=args.seed)
    returns = []
    for episode in range(1, args.episodes + 1):
        returns.append(run_episode(env, agent))
        if episode % args.every == 0 or episode == args.episodes:
            block = returns[-args.every:]
            print(f"episodes {episode - len(block) + 1:>4}-{episode:<4} mean return {np.mean(block):7.3f}")

    policy = greedy_policy(env, agent)
    print("greedy policy:", ", ".join(
        f"s{s}={ACTION_NAMES.get(int(a), int(a))}" for s, a in enumerate(policy.argmax(axis=1))))
    model = env.unwrapped
    print(
        f"expected return of the greedy policy {solvers.policy_value(model, policy):.3f} "
        f"(optimal {solvers.optimal_value(model):.3f}, random {solvers.random_value(model):.3f}); "
        f"{agent.stats.n_transitions} transitions seen"
    )


if __name__ == "__main__":
    main()
