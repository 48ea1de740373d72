"""The pretrained agent next to Stable-Baselines3 PPO and DQN on FrozenLake 4x4, all scored by SB3.

    python examples/sb3_compare.py                                   # about a minute on a laptop CPU
    python examples/sb3_compare.py --timesteps 2000 --episodes 20    # a few seconds
    python examples/sb3_compare.py --env FrozenLake-v1               # any Gymnasium id with finite spaces

PPO and DQN are trained for ``--timesteps`` environment steps, then scored with SB3's
``evaluate_policy`` over ``--episodes`` greedy episodes. The pretrained agent is never trained: it goes
through the very same ``evaluate_policy``, with SB3's defaults (``deterministic=True``), inside
``icrl_agent.InContextWrapper``, which feeds every transition to the agent so that ``agent.predict`` (all
``evaluate_policy`` calls) learns in context, and keeps it exploring although greedy actions are asked for
(``InContextWrapper(env, agent, explore=False)`` would not). Its first pass, from no data at all, is an
online score (it includes the episodes it spent learning); then its greedy policy is scored like PPO's and
DQN's, frozen: on the bare env, which feeds it nothing more. With an env that exposes its exact model (the
``icrl/...`` envs) returns are also shown normalized (0 = uniformly random policy, 1 = optimal).
"""

import argparse
import time

import gymnasium as gym
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import icrl_agent
from icrl_agent.base import _has_time_limit
from icrl_agent.baselines.sb3 import SMALL_BUDGET_PARAMS
from icrl_agent.env_info import EnvInfo, env_id_arg, env_info, make_env


def limited_env(info: EnvInfo) -> gym.Env:
    """The env, inside a ``TimeLimit`` at ``info.episode_cap`` steps if it has none (an episode must end)."""
    env = make_env(info.env_id)
    return env if _has_time_limit(env) else gym.wrappers.TimeLimit(env, max_episode_steps=info.episode_cap)


def train_sb3(name: str, info: EnvInfo, timesteps: int, seed: int):
    """An SB3 model trained on the env for ``timesteps`` steps (hyperparameters for small budgets)."""
    algo = {"PPO": PPO, "DQN": DQN}[name]
    model = algo("MlpPolicy", Monitor(limited_env(info)), seed=seed, device="cpu", **SMALL_BUDGET_PARAMS[name])
    return model.learn(total_timesteps=timesteps)


def score(model, env: gym.Env, episodes: int, deterministic: bool) -> tuple[float, float]:
    """Mean and std of the return over ``episodes`` episodes of SB3's ``evaluate_policy``."""
    mean, std = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=deterministic)
    return float(mean), float(std)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--env", type=env_id_arg, default="icrl/FrozenLake4x4-v0",
        help="any Gymnasium id with finite spaces (FrozenLake-v1, CliffWalking-v1, Taxi-v4, icrl/...)",
    )
    parser.add_argument("--timesteps", type=int, default=20_000, help="training steps of PPO and DQN each")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per evaluate_policy call")
    parser.add_argument("--seed", type=int, default=0, help="seed of every model and env")
    args = parser.parse_args()
    torch.set_num_threads(1)  # SB3's small networks: one thread is as fast, and much faster on a busy machine

    info = env_info(args.env)
    print(info.describe())

    def show(label: str, mean: float, std: float, seconds: float) -> None:
        norm = f" (normalized {info.score([mean])[0]:.2f})" if info.exact else " (raw return)"
        print(f"  {label:<46} mean return {mean:.3f} +- {std:.3f}{norm}, {seconds:.1f} s")

    for name in ("PPO", "DQN"):
        start = time.perf_counter()
        model = train_sb3(name, info, args.timesteps, args.seed)
        mean, std = score(model, Monitor(limited_env(info)), args.episodes, deterministic=True)
        show(f"{name}, {args.timesteps} training steps, greedy", mean, std, time.perf_counter() - start)

    start = time.perf_counter()
    env = limited_env(info)
    agent = icrl_agent.Agent(env.observation_space, env.action_space, seed=args.seed)
    wrapped = Monitor(icrl_agent.InContextWrapper(env, agent))  # explores, although SB3 asks for greedy actions
    wrapped.reset(seed=args.seed)
    mean, std = score(agent, wrapped, args.episodes, deterministic=True)  # SB3's default
    show("icrl agent, learning in context (online)", mean, std, time.perf_counter() - start)
    wrapped.close()  # done learning: greedy requests are the exploitation policy again
    start = time.perf_counter()
    mean, std = score(agent, Monitor(limited_env(info)), args.episodes, deterministic=True)
    show(f"icrl agent, greedy, frozen after {agent.stats.n_transitions} steps", mean, std, time.perf_counter() - start)


if __name__ == "__main__":
    main()
