"""What the pretrained agent would score online if its reward-scale estimate were the truth.

    python tools/oracle_scale.py --env icrl/SixArms-v0 --episodes 200 --seeds 10
    python tools/oracle_scale.py --env probe/TwoGoals-v0:length=20:small=0.01:cost=0.001:horizon=60 \
        --weights runs/override/v26-once --episodes 100 --seeds 10 --scale both

A diagnostic, not a benchmark: the network's scale estimate (``IcrlModel._scale``, in units of the largest
reward seen) is replaced by the env's true largest ``|R(s, a)|`` divided by that reward, so the agent is as
optimistic as a perfect scale head would make it; everything else is the shipped agent told nothing. The
normalized return uses the env's exact model, as ``python -m icrl_agent.bench online`` does. If the oracle
does not reach a target, no better scale head will. ``--weights`` runs other weights than the shipped ones;
``--scale both`` also runs them with their own scale estimate, on the same seeds; ``probe/TwoGoals-v0`` is the
corridor of ``tools/two_goals.py``. ``--env`` takes keywords as the bench does (``name:key=value``: for the corridor
its length, small goal, cost and horizon).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

from icrl_agent import Agent  # importing icrl_agent registers the icrl/ envs
from icrl_agent.bench.common import split_env_spec
from icrl_agent.model import IcrlModel

TWO_GOALS = "probe/TwoGoals-v0"


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


def run(env_spec: str, episodes: int, seed: int, weights: str | None = None, oracle: bool = True) -> float:
    """Mean normalized return over ``episodes`` online episodes of the agent (``weights``, else the shipped ones),
    with the oracle scale or (``oracle=False``) its own, on ``env_spec`` (``name:key=value``, as the bench's)."""
    env_id, env_kwargs = split_env_spec(env_spec)
    limit = {"max_episode_steps": env_kwargs["horizon"]} if "horizon" in env_kwargs else {}  # a probe's time limit
    env = gym.make(env_id, **env_kwargs, **limit)
    P, R, _ = env.unwrapped.transition_matrix()
    true_max = float(np.abs(R).max())
    agent = Agent(env.observation_space, env.action_space, seed=seed, weights=weights)
    if oracle:
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
    parser.add_argument("--env", default="icrl/SixArms-v0", help="a registered env with an exact model, name:key=value for its keywords")
    parser.add_argument("--episodes", type=int, default=200, help="online episodes per seed")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. seeds-1")
    parser.add_argument("--weights", default=None, help="weights to run (default: the shipped ones)")
    parser.add_argument("--scale", choices=("oracle", "both"), default="oracle",
                        help="'both': also the agent with its own scale estimate, on the same seeds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if split_env_spec(args.env)[0] == TWO_GOALS:
        from two_goals import register  # tools/, beside this script

        register()
    for oracle in (True, False)[: 2 if args.scale == "both" else 1]:
        scores = [run(args.env, args.episodes, seed, args.weights, oracle) for seed in range(args.seeds)]
        who = "oracle-scale agent" if oracle else "agent with its own scale"
        print(f"{args.env}: {who}, mean normalized online return {np.mean(scores):.3f} over seeds "
              f"0-{args.seeds - 1} ({', '.join(f'{s:.2f}' for s in scores)})")


if __name__ == "__main__":
    main()
