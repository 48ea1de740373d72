"""Several envs, one agent: a Gymnasium ``SyncVectorEnv`` of ``InContextWrapper``-wrapped envs.

    python examples/vector_envs.py                          # 4 x FrozenLake 4x4, 200 episodes, < 1 min
    python examples/vector_envs.py --n-envs 8 --episodes 400 --env icrl/RiverSwim-v0

Every sub-env wraps its own env around the *same* agent, which acts for all of them at once with a
batched ``agent.predict(obs_batch)`` and learns from every sub-env's transitions (the wrappers feed them
to it, each sub-env being its own stream of episodes). The script prints the returns of the episodes as
they finish, then checks the agent's transition count against the true number of transitions: with
Gymnasium's default autoreset (NEXT_STEP), the step after an episode's end only resets that sub-env, and
that step is not a transition, so it must not be counted.
"""

import argparse

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from icrl_agent import Agent, InContextWrapper
from icrl_agent.base import MAX_HORIZON, _has_time_limit
from icrl_agent.env_info import env_id_arg, make_env


def make_limited_env(env_id: str) -> gym.Env:
    """The env, inside a ``TimeLimit`` of ``MAX_HORIZON`` steps if it has none (e.g. ``CliffWalking-v1``)."""
    env = make_env(env_id)
    return env if _has_time_limit(env) else gym.wrappers.TimeLimit(env, max_episode_steps=MAX_HORIZON)


def make_vector_env(env_id: str, n_envs: int, agent: Agent) -> SyncVectorEnv:
    """``n_envs`` copies of ``env_id``, each in an ``InContextWrapper`` around ``agent``."""
    probe = make_env(env_id)
    assert probe.observation_space == agent.observation_space, "the agent was built for another env"
    probe.close()
    return SyncVectorEnv(
        [lambda: InContextWrapper(make_limited_env(env_id), agent) for _ in range(n_envs)],
        autoreset_mode=AutoresetMode.NEXT_STEP,
    )


def run(envs: SyncVectorEnv, agent: Agent, episodes: int, seed: int, every: int) -> tuple[list[float], int]:
    """Step all sub-envs until ``episodes`` episodes have finished; their returns and the true transition count."""
    obs, _ = envs.reset(seed=seed)
    running = np.zeros(envs.num_envs)
    resetting = np.zeros(envs.num_envs, bool)  # this step only resets these sub-envs (NEXT_STEP autoreset)
    returns: list[float] = []
    transitions = 0
    while len(returns) < episodes:
        actions, _ = agent.predict(obs)
        obs, rewards, terminated, truncated, _ = envs.step(actions)
        real = ~resetting
        transitions += int(real.sum())
        running[real] += rewards[real]
        resetting = terminated | truncated
        for i in np.flatnonzero(resetting):
            returns.append(float(running[i]))
            running[i] = 0.0
            if len(returns) % every == 0:
                block = returns[-every:]
                print(f"episodes {len(returns) - every + 1:>4}-{len(returns):<4} mean return {np.mean(block):.3f}")
    return returns, transitions


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--env", type=env_id_arg, default="icrl/FrozenLake4x4-v0",
        help="any Gymnasium id with finite spaces (FrozenLake-v1, CliffWalking-v1, Taxi-v4, icrl/...); one without a "
        "time limit gets a TimeLimit of MAX_HORIZON (500) steps",
    )
    parser.add_argument("--n-envs", type=int, default=4, help="sub-envs sharing the agent")
    parser.add_argument("--episodes", type=int, default=200, help="finished episodes to run, all sub-envs together")
    parser.add_argument("--every", type=int, default=20, help="print the mean return of each block of this many")
    parser.add_argument("--seed", type=int, default=0, help="seed of the agent and the envs")
    args = parser.parse_args()

    single = make_env(args.env)
    agent = Agent(single.observation_space, single.action_space, seed=args.seed)
    envs = make_vector_env(args.env, args.n_envs, agent)
    returns, transitions = run(envs, agent, args.episodes, args.seed, args.every)
    envs.close()

    stats = agent.stats
    print(f"{len(returns)} episodes finished, mean return {np.mean(returns):.3f}")
    print(f"true transitions {transitions}, counted by the agent {stats.n_transitions} "
          f"({stats.n_episodes} episodes, {stats.n_states} states met)")
    if stats.n_transitions != transitions:
        raise SystemExit("the agent's statistics do not match the transitions that happened")
    print("counts match: the autoreset steps were not counted")


if __name__ == "__main__":
    main()
