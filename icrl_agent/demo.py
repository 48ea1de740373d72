"""The main job: the pretrained agent learns a benchmark env in context, against classical baselines.

    python -m icrl_agent.demo [--env icrl/GridWorld-FourRooms-v0] [--episodes 80] [--agents icrl,optvi,psrl,qlearning]

Each agent starts from nothing and learns online, episode by episode, only by updating its statistics.
Progress is printed as the normalized return (0 = random policy, 1 = optimal, from the env's exact
model) and a learning-curve PNG is saved. The classical baselines are told the horizon and the reward
scale; ``icrl`` is told nothing.

The default env, a 104-state four-rooms grid, is representative of where the agent stands: level with
OptimisticVI, well ahead of Q-learning and PSRL (benchmarks/results/icrl/online.md). ``--env
icrl/RiverSwim-v0`` shows its best-known loss: without the reward scale, on some seeds it settles for
RiverSwim's small early reward.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from icrl_agent.bench.agents import parse_agents
from icrl_agent.bench.common import env_reference, make_env
from icrl_agent.bench.report import normalize


def play_episode(agent, env: gym.Env, seed: int | None) -> float:
    """One episode of act/step/observe; its undiscounted return."""
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        agent.observe(obs, action, float(reward), next_obs, terminated, truncated)
        total += float(reward)
        obs, done = next_obs, terminated or truncated
    return total


def learning_curve(spec, env_id: str, episodes: int, seed: int, print_every: int) -> np.ndarray:
    """Normalized return of each episode of one agent learning ``env_id`` from scratch."""
    env = make_env(env_id)
    ref = env_reference(env_id)
    agent = spec.build(env, seed)
    curve = np.empty(episodes)
    bar = tqdm(range(episodes), desc=f"{spec.name:>10}", unit="ep", leave=False)
    for k in bar:
        ret = play_episode(agent, env, seed if k == 0 else None)
        curve[k] = normalize([ret], ref.optimal, ref.random)[0]
        recent = curve[max(0, k - 9) : k + 1].mean()
        bar.set_postfix(normalized=f"{recent:.2f}", refresh=False)
        if (k + 1) % print_every == 0 or k + 1 == episodes:
            tqdm.write(f"{spec.name:>10}  episode {k + 1:4d}  normalized return (last 10) {recent:6.2f}")
    return curve


def plot(curves: dict[str, np.ndarray], env_id: str, out: Path) -> None:
    """Save the learning curves (10-episode moving average) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        window = min(10, len(curve))
        smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window, len(curve) + 1), smooth, label=name, lw=2 if name == "icrl" else 1.2)
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    ax.set(xlabel="episode", ylabel="normalized return (10-episode mean)", title=f"Learning {env_id} in context")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m icrl_agent.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="icrl/GridWorld-FourRooms-v0", help="a registered env id")
    parser.add_argument("--episodes", type=int, default=80, help="episodes each agent learns for")
    parser.add_argument("--agents", default="icrl,optvi,psrl,qlearning", help="comma-separated agent names")
    parser.add_argument("--seed", type=int, default=0, help="seed of the agents and the env")
    parser.add_argument("--print-every", type=int, default=10, help="print progress every N episodes")
    parser.add_argument("--out", type=Path, default=Path("learning_curve.png"), help="where to save the plot")
    args = parser.parse_args(argv)

    specs = parse_agents(args.agents)
    ref = env_reference(args.env)
    print(f"{args.env}: {ref.n_states} states, {ref.n_actions} actions, horizon {ref.horizon}; "
          f"optimal return {ref.optimal:.3f}, random {ref.random:.3f}")
    curves = {}
    for spec in specs:
        told = "told the horizon and reward scale" if spec.hints else "told nothing"
        print(f"\n{spec.name} ({told}) learns for {args.episodes} episodes")
        curves[spec.name] = learning_curve(spec, args.env, args.episodes, args.seed, args.print_every)
    print("\nmean normalized return over all episodes:")
    for name, curve in curves.items():
        print(f"  {name:>10}  {curve.mean():.3f}")
    plot(curves, args.env, args.out)
    print(f"learning curves saved to {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
