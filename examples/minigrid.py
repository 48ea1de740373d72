"""A MiniGrid task, learned in context: the pretrained agent on DoorKey-5x5 through the tabular wrapper.

    pip install -e ".[minigrid]"
    python examples/minigrid.py                                        # DoorKey-5x5, 40 episodes
    python examples/minigrid.py --env icrl/MiniGrid-Empty-6x6-v0 --episodes 80 --every 10

``gymnasium.make("icrl/MiniGrid-DoorKey-5x5-v0")`` steps the real MiniGrid env but shows each state as a
``Discrete`` id (agent pose, carried key, door state); the reward is 1 on reaching the goal within the
horizon, 0 otherwise. The agent is told nothing about the task: it has to find the key, pick it up, open
the door and reach the goal, learning from its own counts as it goes (reaching the goal at any step
within the horizon earns the same 1, so successful episodes need not be short). Every ``--every`` episodes the
script prints the success rate, the mean episode length and how many of the task's states the agent has
met. It ends with the normalized online return (0 = uniformly random policy, 1 = optimal) and the exact
expected return of the agent's final greedy policy, both from the task's exact model.
"""

import argparse
import os
import sys

import gymnasium as gym
import numpy as np

import icrl_agent  # noqa: F401  (registers the icrl/... envs; the MiniGrid ones need minigrid installed)
from icrl_agent import Agent, solvers
from icrl_agent.env_info import env_id_arg, env_info, make_env


def unshadow_minigrid() -> None:
    """Drop this script's folder from ``sys.path``: this file, named ``minigrid.py``, would hide the package."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]


def run_episode(env: gym.Env, agent: Agent, cap: int) -> tuple[float, int]:
    """One episode of act / step / observe, cut (as a truncation) after ``cap`` steps; its return and length."""
    obs, _ = env.reset()
    total, steps, done = 0.0, 0, False
    while not done:
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        truncated = bool(truncated) or (steps >= cap and not terminated)
        agent.observe(obs, action, reward, next_obs, terminated, truncated)
        total += float(reward)
        obs, done = next_obs, terminated or truncated
    return total, steps


def greedy_policy(agent: Agent, n_states: int, horizon: int) -> np.ndarray:
    """The agent's greedy policy ``[H, S, A]`` over the env's state ids, by steps to go (``agent.policy``)."""
    table = np.zeros((horizon, n_states, agent.n_actions))
    table[:, :, 0] = 1.0  # states never met: the first action, as act(obs, deterministic=True) does
    ids = [agent.stats.state_id(s) for s in range(n_states)]
    met = [s for s, i in enumerate(ids) if i is not None]
    for step in range(horizon):
        probs = agent.policy(step=step, deterministic=True)
        table[solvers.to_go_index(horizon, step), met] = probs[[ids[s] for s in met]]
    return table


def main() -> None:
    unshadow_minigrid()  # before any gym.make, which imports minigrid
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--env", type=env_id_arg, default="icrl/MiniGrid-DoorKey-5x5-v0",
        help="an icrl/MiniGrid-... env id (MiniGrid-Empty-6x6, MiniGrid-DoorKey-5x5, MiniGrid-FourRooms), or any "
        "Gymnasium id with finite spaces",
    )
    parser.add_argument("--episodes", type=int, default=40, help="episodes to learn for")
    parser.add_argument("--every", type=int, default=5, help="print progress every this many episodes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the agent and the env")
    args = parser.parse_args()

    info = env_info(args.env)
    print(info.describe())
    env = make_env(args.env)
    agent = Agent(env.observation_space, env.action_space, seed=args.seed)
    env.reset(seed=args.seed)
    returns, lengths = [], []
    what = "success rate" if "MiniGrid" in args.env else "mean return"
    of = f"/{info.n_states}" if info.n_states is not None else ""
    for episode in range(1, args.episodes + 1):
        ret, steps = run_episode(env, agent, info.episode_cap)
        returns.append(ret)
        lengths.append(steps)
        if episode % args.every == 0 or episode == args.episodes:
            block = slice(-args.every, None)
            print(f"episode {episode:>4}: {what} {np.mean(returns[block]):.2f}, mean length "
                  f"{np.mean(lengths[block]):5.1f}, states met {agent.stats.n_states}{of}")

    if not info.exact:
        print(f"mean return over {args.episodes} episodes: {np.mean(returns):.3f} (raw: no exact model)")
        return
    model = env.unwrapped
    greedy = solvers.policy_value(model, greedy_policy(agent, model.n_states, model.horizon))
    print(f"normalized online return over {args.episodes} episodes: {info.score([np.mean(returns)])[0]:.2f}")
    print(f"greedy policy: expected return {greedy:.3f}, normalized {info.score([greedy])[0]:.2f}")


if __name__ == "__main__":
    main()
