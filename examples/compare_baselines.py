"""Compare agents on one env and plot their learning curves (online return, normalized when possible).

    python examples/compare_baselines.py                                   # RiverSwim, 4 agents, < 1 min
    python examples/compare_baselines.py --env FrozenLake4x4 --agents optvi,psrl,ppo --episodes 200
    python examples/compare_baselines.py --env CliffWalking-v1             # any Gymnasium id with finite spaces

Every agent learns the env from scratch for ``--episodes`` episodes, for each of ``--seeds`` seeds. With an
env that exposes its exact model (every ``icrl/...`` benchmark env), returns are normalized: 0 is the
uniformly random policy's expected return, 1 the optimal policy's; a single episode can score above 1
(luckier than the expectation), and the figure says so when a curve does. With any other env the returns
are raw. The figure (mean over seeds of each seed's 10-episode moving average; shaded: 95% bootstrap
confidence interval of that mean over seeds) is written to ``--plot``. ``python -m icrl_agent.bench online``
runs the full benchmark.
"""

import argparse
import os

import numpy as np

from icrl_agent.bench import report
from icrl_agent.bench.agents import AGENTS, parse_agents
from icrl_agent.demo import build_agent, told
from icrl_agent.env_info import EnvInfo, env_id_arg, env_info, make_env, run_episode


def agents_arg(text: str):
    """An ``argparse`` ``type=``: the agent specs, or an argparse error naming the valid agents."""
    try:
        return parse_agents(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def plot(path: str, info: EnvInfo, curves: dict[str, np.ndarray], labels: dict[str, str], window: int = 10) -> None:
    """Mean over seeds of the moving-averaged curves, with the 95% bootstrap CI of that mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    top = -np.inf
    for name, runs in curves.items():
        smooth = np.stack([report.moving_average(run, window) for run in runs])
        episodes = np.arange(1, smooth.shape[1] + 1)
        low, high = report.bootstrap_band(smooth)
        mean = smooth.mean(axis=0)
        top = max(top, float(mean.max()))
        ax.plot(episodes, mean, label=labels[name])
        ax.fill_between(episodes, low, high, alpha=0.2)
    ax.fill_between([], [], [], color="grey", alpha=0.2, label=f"95% bootstrap CI over {len(runs)} seeds")
    title = f"{info.env_id}: learning online"
    if info.exact:
        ax.axhline(1.0, color="gray", lw=0.8, ls="--", label="1 = optimal policy (expected return)")
        ax.axhline(0.0, color="gray", lw=0.8, ls=":", label="0 = uniformly random policy")
        if top > 1.0:
            title += "\n(above 1: episodes luckier than the optimal policy's expected return)"
    ax.set_xlabel("episode")
    ax.set_ylabel(f"{info.return_label}\n{window}-episode moving mean, mean over seeds")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--env", type=env_id_arg, default="RiverSwim",
        help="any Gymnasium id with finite spaces (FrozenLake-v1, CliffWalking-v1, Taxi-v4) or a benchmark "
        "env (icrl/Taxi-v0 or Taxi, ...)",
    )
    parser.add_argument(
        "--agents", type=agents_arg, default="random,qlearning,psrl,optvi", help=f"among: {', '.join(AGENTS)}"
    )
    parser.add_argument("--episodes", type=int, default=60, help="episodes per run")
    parser.add_argument("--seeds", type=int, default=3, help="runs per agent")
    parser.add_argument(
        "--plot", default=os.path.join("runs", "compare_baselines.png"), help="where to write the figure"
    )
    args = parser.parse_args()
    if args.episodes < 1 or args.seeds < 1:
        parser.error("--episodes and --seeds must be positive")

    info = env_info(args.env)
    print(info.describe())
    curves, labels = {}, {}
    for spec in args.agents:
        runs = []
        for seed in range(args.seeds):
            env = make_env(info.env_id)
            if spec.kind == "sb3":
                agent = spec.build(env, seed)
                returns = agent.learn(total_episodes=args.episodes)
            else:
                agent = build_agent(spec, env, info, seed)  # classical agents: told what is known of the env
                env.reset(seed=seed)
                returns = [run_episode(agent, env, info.episode_cap) for _ in range(args.episodes)]
            runs.append(info.score(returns))
            env.close()
        curves[spec.name] = np.stack(runs)
        labels[spec.name] = f"{spec.name} ({'trained by SB3' if spec.kind == 'sb3' else told(spec, info)})"
        per_seed = curves[spec.name].mean(axis=1)
        print(
            f"  {spec.name:>10}: mean {'normalized ' if info.exact else ''}return "
            f"{report.format_ci(per_seed.mean(), *report.bootstrap_ci(per_seed))}"
        )
    plot(args.plot, info, curves, labels)
    print(f"learning curves written to {args.plot}")


if __name__ == "__main__":
    main()
