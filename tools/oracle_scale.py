"""What the pretrained agent would score online if its reward-scale estimate were the truth.

    python tools/oracle_scale.py --env icrl/SixArms-v0 --episodes 200 --seeds 10

A diagnostic, not a benchmark: the network's scale estimate (``IcrlModel._scale``, in units of the largest
reward seen) is replaced by the env's true largest ``|R(s, a)|`` divided by that reward, so the agent is as
optimistic as a perfect scale head would make it; everything else is the shipped agent told nothing. The
normalized return uses the env's exact model, as ``python -m icrl_agent.bench online`` does. If the oracle
does not reach a target, no better scale head will.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

from icrl_agent import Agent  # importing icrl_agent registers the icrl/ envs
from icrl_agent.model import IcrlModel


def oracle_model(model: IcrlModel, true_max: float) -> IcrlModel:
    """The same network with its scale estimate replaced by ``true_max / c`` (at least 1), per forward pass."""
    inputs, seen = model._inputs, {}

    def remember_c(*args, **kwargs):
        inp = inputs(*args, **kwargs)
        seen["c"] = inp.c
        return inp

    model._inputs = remember_c  # type: ignore[method-assign]
    model._scale = lambda g, inp: (true_max / seen["c"]).clamp(min=1.0)  # type: ignore[method-assign]
    return model


def run(env_id: str, episodes: int, seed: int) -> float:
    """Mean normalized return of the oracle-scale agent over ``episodes`` online episodes."""
    env = gym.make(env_id)
    P, R, _ = env.unwrapped.transition_matrix()
    true_max = float(np.abs(R).max())
    agent = Agent(env.observation_space, env.action_space, seed=seed)
    oracle_model(agent.model, true_max)
    returns = []
    env.reset(seed=seed)
    for _ in range(episodes):
        obs, _ = env.reset()
        total, done = 0.0, False
        while not done:
            action = agent.act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            agent.observe(obs, action, reward, next_obs, terminated, truncated)
            total, obs, done = total + float(reward), next_obs, terminated or truncated
        returns.append(total)
    optimal, random_return = env.unwrapped.optimal_value(), env.unwrapped.random_value()
    return float((np.mean(returns) - random_return) / (optimal - random_return))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="icrl/SixArms-v0", help="a registered icrl/ env (it needs an exact model)")
    parser.add_argument("--episodes", type=int, default=200, help="online episodes per seed")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. seeds-1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scores = [run(args.env, args.episodes, seed) for seed in range(args.seeds)]
    print(f"{args.env}: oracle-scale agent, mean normalized online return {np.mean(scores):.2f} over seeds "
          f"0-{args.seeds - 1} ({', '.join(f'{s:.2f}' for s in scores)})")


if __name__ == "__main__":
    main()
