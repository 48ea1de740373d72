"""The main job: the pretrained agent learns an env in context, against classical baselines.

    python -m icrl_agent.demo [--env icrl/GridWorld-FourRooms-v0] [--episodes 80] [--agents icrl,optvi,psrl,qlearning]
    python -m icrl_agent.demo --env FrozenLake-v1        # any Gymnasium id with finite spaces

Each agent starts from nothing and learns online, episode by episode, only by updating its statistics.
Progress is printed, and a learning-curve PNG is saved (``--out``, by default ``runs/learning_curve.png``).
With an env that exposes its exact model (every ``icrl/...`` benchmark env) returns are normalized:
0 = the uniformly random policy, 1 = the optimal policy (expected returns, computed exactly); with any
other env (e.g. ``FrozenLake-v1``, ``CliffWalking-v1``, ``Taxi-v4``) they are raw returns. The classical
baselines are told what is known of the horizon and the reward scale; ``icrl`` is told nothing.

The default env, a 104-state four-rooms grid, is representative of where the agent stands: level with
OptimisticVI, well ahead of Q-learning and PSRL (benchmarks/results/icrl/online.md). ``--env
icrl/RiverSwim-v0`` shows its best-known loss: without the reward scale, on some seeds it settles for
RiverSwim's small early reward.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from icrl_agent.bench.agents import AGENTS, AgentSpec, parse_agents
from icrl_agent.env_info import EnvInfo, env_id_arg, env_info, make_env, run_episode

DEFAULT_OUT = Path("runs") / "learning_curve.png"
"""Where the PNG goes unless ``--out`` says otherwise (``runs/`` is git-ignored)."""


def tabular_agent_names() -> list[str]:
    """Agents the demo can run: those driven step by step with ``act`` / ``observe``."""
    return [name for name, spec in AGENTS.items() if spec.kind == "tabular"]


def agents_arg(text: str) -> list[AgentSpec]:
    """An ``argparse`` ``type=``: the agent specs, or an argparse error naming the valid agents."""
    valid = tabular_agent_names()
    try:
        specs = parse_agents(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err} (the demo runs: {', '.join(valid)})") from None
    for spec in specs:
        if spec.kind != "tabular":
            raise argparse.ArgumentTypeError(
                f"agent {spec.name!r} is not driven by act/observe; the demo runs: {', '.join(valid)} "
                "(examples/compare_baselines.py also runs ppo, dqn, a2c)"
            )
    return specs


def build_agent(spec: AgentSpec, env: gym.Env, info: EnvInfo, seed: int) -> Any:
    """A fresh agent for ``env``: told ``info.hints()`` if it is a hinted (classical) agent."""
    hints = info.hints() if spec.hints else {}
    return spec.resolve()(env.observation_space, env.action_space, seed=seed, **hints, **spec.params)


def told(spec: AgentSpec, info: EnvInfo) -> str:
    """What ``spec`` is told about the env, in words."""
    hints = info.hints() if spec.hints else {}
    if not hints:
        return "told nothing"
    words = {"horizon": "the horizon", "reward_max": "the reward scale"}
    return "told " + " and ".join(words[k] for k in hints)


def learning_curve(
    spec: AgentSpec, info: EnvInfo, episodes: int, seed: int, print_every: int, progress: bool
) -> np.ndarray:
    """Score (normalized or raw, see :meth:`EnvInfo.score`) of each episode of one agent learning from scratch."""
    env = make_env(info.env_id)
    agent = build_agent(spec, env, info, seed)
    curve = np.empty(episodes)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=episodes, desc=f"{spec.name:>10}", unit="ep", leave=False)
    for k in range(episodes):
        ret = run_episode(agent, env, info.episode_cap, seed if k == 0 else None)
        curve[k] = info.score([ret])[0]
        recent = curve[max(0, k - 9) : k + 1].mean()
        if bar is not None:
            bar.update()
            bar.set_postfix(score=f"{recent:.2f}", refresh=False)
        if (k + 1) % print_every == 0 or k + 1 == episodes:
            line = f"{spec.name:>10}  episode {k + 1:4d}  {'normalized ' if info.exact else ''}return (last 10) {recent:8.2f}"
            if bar is not None:
                bar.write(line)
            else:
                print(line)
    if bar is not None:
        bar.close()
    env.close()
    return curve


def plot(curves: dict[str, np.ndarray], labels: dict[str, str], info: EnvInfo, out: Path) -> None:
    """Save the learning curves (10-episode moving average) as a PNG at ``out`` (folders created)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    top = -np.inf
    for name, curve in curves.items():
        window = min(10, len(curve))
        smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
        top = max(top, float(smooth.max()))
        ax.plot(np.arange(window, len(curve) + 1), smooth, label=labels[name], lw=2 if name == "icrl" else 1.2)
    title = f"Learning {info.env_id} in context"
    if info.exact:
        ax.axhline(1.0, color="grey", ls="--", lw=1, label="1 = optimal policy (expected return)")
        ax.axhline(0.0, color="grey", ls=":", lw=1, label="0 = uniformly random policy")
        if top > 1.0:
            title += "\n(above 1: episodes luckier than the optimal policy's expected return)"
    ax.set(xlabel="episode", ylabel=f"{info.return_label}\n10-episode moving mean", title=title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m icrl_agent.demo",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--env", type=env_id_arg, default="icrl/GridWorld-FourRooms-v0",
        help="any Gymnasium id with finite spaces (FrozenLake-v1, CliffWalking-v1, Taxi-v4, ...) or a benchmark "
        "env (icrl/RiverSwim-v0 or RiverSwim, ...)",
    )
    parser.add_argument("--episodes", type=int, default=80, help="episodes each agent learns for")
    parser.add_argument(
        "--agents", type=agents_arg, default="icrl,optvi,psrl,qlearning",
        help=f"comma-separated agent names among: {', '.join(tabular_agent_names())}",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the agents and the env")
    parser.add_argument("--print-every", type=int, default=10, help="print progress every N episodes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to save the plot (folders are created)")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (they are shown only on a terminal anyway)"
    )
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.print_every < 1:
        parser.error("--episodes and --print-every must be positive")
    progress = not args.no_progress and sys.stderr.isatty()

    info = env_info(args.env)
    print(info.describe())
    curves, labels = {}, {}
    for spec in args.agents:
        labels[spec.name] = f"{spec.name} ({told(spec, info)})"
        print(f"\n{labels[spec.name]} learns for {args.episodes} episodes")
        curves[spec.name] = learning_curve(spec, info, args.episodes, args.seed, args.print_every, progress)
    print(f"\nmean {info.return_label} over all episodes:")
    for name, curve in curves.items():
        print(f"  {name:>10}  {curve.mean():.3f}")
    plot(curves, labels, info, args.out)
    print(f"learning curves saved to {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
