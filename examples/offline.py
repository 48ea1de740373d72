"""Offline: record a Minari dataset from a behaviour policy, ``agent.fit`` it, then act greedily.

    pip install -e ".[offline]"      # minari[create,hdf5] + pillow (DataCollector needs JAX)
    python examples/offline.py                                       # FrozenLake 4x4, a few seconds
    python examples/offline.py --env icrl/RiverSwim-v0 --episodes 50 --epsilon 0.3

The behaviour policy is epsilon-greedy around the env's optimal policy (computed from its exact model):
with probability ``--epsilon`` a uniformly random action (``--epsilon 1`` is the random policy). Minari's
``DataCollector`` records ``--episodes`` episodes of it into a ``minari.MinariDataset``, which
``agent.fit(dataset)`` reads episode by episode into the agent's statistics. The agent then acts
greedily (``act(obs, deterministic=True)``) without learning anything more. The script prints the
behaviour policy's and the agent's returns, normalized with Minari's ``get_normalized_score`` against
reference scores taken from the exact model (0 = uniformly random policy, 1 = optimal), and the exact
expected return of the agent's greedy policy. Minari writes only inside a temporary directory
(``MINARI_DATASETS_PATH``), deleted at the end.
"""

import argparse
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gymnasium as gym
import minari
import numpy as np
from minari import DataCollector

import icrl_agent  # noqa: F401  (registers the icrl/... envs)
from icrl_agent import Agent, solvers
from icrl_agent.base import MAX_HORIZON, _has_time_limit
from icrl_agent.env_info import env_id_arg, make_env


@contextmanager
def minari_datasets_in(path: str) -> Iterator[None]:
    """Point Minari's ``MINARI_DATASETS_PATH`` at ``path`` for the duration of the block."""
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = path
    try:
        yield
    finally:
        if before is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


def behaviour_policy(env: gym.Env, epsilon: float, rng: np.random.Generator) -> Callable[[int, int], int]:
    """``policy(obs, step)``: the optimal action at that elapsed step, or a random one with prob. ``epsilon``.

    An env without an exact model (no ``transition_matrix()``) has no known optimal action: its behaviour
    policy is uniformly random whatever ``epsilon``.
    """
    model = env.unwrapped
    if not hasattr(model, "transition_matrix"):
        return lambda obs, step: int(env.action_space.sample())
    P, R, terminal = model.transition_matrix()
    q = solvers.finite_horizon_q(P, R, model.horizon, terminal).numpy()  # q[k - 1, state, action], k steps to go

    def policy(obs: int, step: int) -> int:
        if rng.random() < epsilon:
            return int(rng.integers(env.action_space.n))
        return int(q[solvers.to_go_index(len(q), step), obs].argmax())

    return policy


def collect(env_id: str, dataset_id: str, episodes: int, epsilon: float, seed: int) -> minari.MinariDataset:
    """Run the behaviour policy for ``episodes`` episodes under a ``DataCollector``; the Minari dataset."""
    env = make_env(env_id)
    if not _has_time_limit(env):
        env = gym.wrappers.TimeLimit(env, max_episode_steps=MAX_HORIZON)  # every recorded episode must end
    collector = DataCollector(env)
    collector.action_space.seed(seed)
    policy = behaviour_policy(collector, epsilon, np.random.default_rng(seed))
    for episode in range(episodes):
        # Minari seeds an unseeded reset at random: seeding each episode keeps the run reproducible.
        obs, _ = collector.reset(seed=seed + episode)
        step, done = 0, False
        while not done:
            obs, _, terminated, truncated, _ = collector.step(policy(obs, step))
            step, done = step + 1, terminated or truncated
    model = collector.unwrapped
    exact = hasattr(model, "transition_matrix")
    refs = {  # exact references: Minari estimates nothing
        "ref_min_score": solvers.random_value(model),
        "ref_max_score": solvers.optimal_value(model),
    } if exact else {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is set to None", category=UserWarning)  # author etc.
        return collector.create_dataset(
            dataset_id=dataset_id,
            eval_env=env_id,
            algorithm_name=f"epsilon-greedy around the optimal policy, epsilon={epsilon}" if exact
            else "uniformly random (no exact model to compute an optimal policy)",
            description=f"{episodes} episodes of {env_id} for examples/offline.py",
            **refs,
        )


def greedy_returns(env: gym.Env, agent: Agent, episodes: int, seed: int) -> list[float]:
    """Returns of ``episodes`` episodes of ``act(obs, deterministic=True)``; the agent observes nothing."""
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
            steps += 1
            total, done = total + float(reward), terminated or truncated or steps >= MAX_HORIZON
        returns.append(total)
    return returns


def greedy_value(env: gym.Env, agent: Agent) -> float:
    """Exact expected return of the agent's greedy action in each state, from the env's model."""
    n_states, n_actions = env.observation_space.n, env.action_space.n
    policy = np.zeros((n_states, n_actions))
    for state in range(n_states):
        policy[state, agent.act(state, deterministic=True)] = 1.0
    return solvers.policy_value(env.unwrapped, policy)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--env", type=env_id_arg, default="icrl/FrozenLake4x4-v0",
        help="any Gymnasium id with finite spaces; without an exact model (FrozenLake-v1, Taxi-v4, ...) the "
        "behaviour policy is uniformly random and returns are raw",
    )
    parser.add_argument("--episodes", type=int, default=200, help="episodes of the behaviour policy to record")
    parser.add_argument("--epsilon", type=float, default=0.5, help="probability of a random behaviour action")
    parser.add_argument("--eval-episodes", type=int, default=200, help="greedy episodes to score the agent")
    parser.add_argument("--seed", type=int, default=0, help="seed of the behaviour policy, the env and the agent")
    args = parser.parse_args()

    dataset_id = "icrl-examples/offline-v0"
    with tempfile.TemporaryDirectory(prefix="minari-") as root, minari_datasets_in(root):
        dataset = collect(args.env, dataset_id, args.episodes, args.epsilon, args.seed)
        behaviour = [float(np.sum(ep.rewards)) for ep in dataset.iterate_episodes()]
        env = make_env(args.env)
        exact = hasattr(env.unwrapped, "transition_matrix")
        agent = Agent(env.observation_space, env.action_space, seed=args.seed)
        added = agent.fit(dataset)
        agent_returns = greedy_returns(env, agent, args.eval_episodes, args.seed)
        if exact:
            scores = minari.get_normalized_score(dataset, np.array([np.mean(behaviour), np.mean(agent_returns)]))
            notes = [f"(normalized {score:.2f})" for score in scores]
        else:
            notes = ["(raw: no exact model)"] * 2
        print(f"{args.env}: recorded {dataset.total_episodes} episodes, {dataset.total_steps} steps "
              f"in {root}; agent.fit added {added} transitions")
        behaviour_name = f"epsilon {args.epsilon}" if exact else "uniformly random"
        print(f"  behaviour policy ({behaviour_name}) mean return {np.mean(behaviour):.3f} {notes[0]}")
        print(f"  agent, greedy, {args.eval_episodes} episodes  mean return {np.mean(agent_returns):.3f} {notes[1]}")
        if exact:
            value = greedy_value(env, agent)
            optimal = solvers.optimal_value(env.unwrapped)
            print(f"  exact expected return of the agent's greedy policy {value:.3f} (optimal {optimal:.3f})")
        minari.delete_dataset(dataset_id)
    print("dataset deleted")


if __name__ == "__main__":
    main()
