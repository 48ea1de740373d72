"""The pretrained agent next to Stable-Baselines3 PPO and DQN on FrozenLake 4x4, all scored by SB3.

    python examples/sb3_compare.py                                   # about a minute on a laptop CPU
    python examples/sb3_compare.py --timesteps 2000 --episodes 20    # a few seconds

PPO and DQN are trained for ``--timesteps`` environment steps, then scored with SB3's
``evaluate_policy`` over ``--episodes`` greedy episodes. The pretrained agent is never trained: it goes
through the very same ``evaluate_policy``, inside ``icrl_agent.InContextWrapper``, which feeds every
transition to the agent so that ``agent.predict`` (all ``evaluate_policy`` calls) learns in context.
Its first pass, from no data at all, is an online score (it includes the episodes it spent learning);
then its greedy policy (``deterministic=True``) is scored like PPO's and DQN's, frozen: on the bare env,
which feeds it nothing more. Returns are also shown normalized with the env's
exact model (0 = uniformly random policy, 1 = optimal).
"""

import argparse
import time

import gymnasium as gym
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import icrl_agent
from icrl_agent.baselines.sb3 import SMALL_BUDGET_PARAMS
from icrl_agent.bench.common import env_reference

ENV_ID = "icrl/FrozenLake4x4-v0"


def normalized(value: float, optimal: float, random: float) -> float:
    """0 for the uniformly random policy's expected return, 1 for the optimal one."""
    return (value - random) / (optimal - random)


def train_sb3(name: str, timesteps: int, seed: int):
    """An SB3 model trained on the env for ``timesteps`` steps (hyperparameters for small budgets)."""
    algo = {"PPO": PPO, "DQN": DQN}[name]
    model = algo("MlpPolicy", Monitor(gym.make(ENV_ID)), seed=seed, device="cpu", **SMALL_BUDGET_PARAMS[name])
    return model.learn(total_timesteps=timesteps)


def score(model, env: gym.Env, episodes: int, deterministic: bool) -> tuple[float, float]:
    """Mean and std of the return over ``episodes`` episodes of SB3's ``evaluate_policy``."""
    mean, std = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=deterministic)
    return float(mean), float(std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timesteps", type=int, default=20_000, help="training steps of PPO and DQN each")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per evaluate_policy call")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # small networks: one thread is as fast, and much faster on a busy machine

    ref = env_reference(ENV_ID)
    print(f"{ENV_ID}: optimal expected return {ref.optimal:.3f}, uniformly random {ref.random:.3f}")

    def show(label: str, mean: float, std: float, seconds: float) -> None:
        norm = normalized(mean, ref.optimal, ref.random)
        print(f"  {label:<46} mean return {mean:.3f} +- {std:.3f} (normalized {norm:.2f}), {seconds:.1f} s")

    for name in ("PPO", "DQN"):
        start = time.perf_counter()
        model = train_sb3(name, args.timesteps, args.seed)
        mean, std = score(model, Monitor(gym.make(ENV_ID)), args.episodes, deterministic=True)
        show(f"{name}, {args.timesteps} training steps, greedy", mean, std, time.perf_counter() - start)

    start = time.perf_counter()
    env = gym.make(ENV_ID)
    agent = icrl_agent.Agent(env.observation_space, env.action_space, seed=args.seed)
    wrapped = Monitor(icrl_agent.InContextWrapper(env, agent))
    wrapped.reset(seed=args.seed)
    mean, std = score(agent, wrapped, args.episodes, deterministic=False)
    show("icrl agent, learning in context (online)", mean, std, time.perf_counter() - start)
    start = time.perf_counter()
    mean, std = score(agent, Monitor(gym.make(ENV_ID)), args.episodes, deterministic=True)
    show(f"icrl agent, greedy, frozen after {agent.stats.n_transitions} steps", mean, std, time.perf_counter() - start)


if __name__ == "__main__":
    main()
