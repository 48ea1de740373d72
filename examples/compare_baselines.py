"""Compare agents on one benchmark env and plot their learning curves (normalized online return).

    python examples/compare_baselines.py                                   # RiverSwim, 4 agents, < 1 min
    python examples/compare_baselines.py --env FrozenLake4x4 --agents optvi,psrl,ppo --episodes 200

Every agent learns the env from scratch for ``--episodes`` episodes, for each of ``--seeds`` seeds. Returns
are normalized with the env's exact model: 0 is the uniformly random policy, 1 the optimal one. The
figure (mean over seeds, 10-episode moving average, 95% bootstrap band) is written to ``--plot``;
``python -m icrl_agent.bench online`` runs the full benchmark with the same machinery.
"""

import argparse

import numpy as np

from icrl_agent.bench import report
from icrl_agent.bench.agents import AGENTS, parse_agents
from icrl_agent.bench.common import env_reference, make_env, parse_envs, run_episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--env", default="RiverSwim", help="a benchmark env id, e.g. RiverSwim or icrl/Taxi-v0"
    )
    parser.add_argument("--agents", default="random,qlearning,psrl,optvi", help=f"among: {', '.join(AGENTS)}")
    parser.add_argument("--episodes", type=int, default=60, help="episodes per run")
    parser.add_argument("--seeds", type=int, default=3, help="runs per agent")
    parser.add_argument("--plot", default="compare_baselines.png", help="where to write the figure")
    args = parser.parse_args()

    env_id = parse_envs(args.env)[0]
    ref = env_reference(env_id)
    print(
        f"{env_id}: {ref.n_states} states, {ref.n_actions} actions, horizon {ref.horizon}, "
        f"optimal return {ref.optimal:.3f}, random {ref.random:.3f}"
    )
    curves = {}
    for spec in parse_agents(args.agents):
        runs = []
        for seed in range(args.seeds):
            env = make_env(env_id)
            agent = spec.build(env, seed)  # classical agents are told the horizon and reward scale
            if spec.kind == "sb3":
                returns = agent.learn(total_episodes=args.episodes)
            else:
                returns = run_episodes(agent, env, args.episodes, seed, ref.horizon)
            runs.append(report.normalize(returns, ref.optimal, ref.random))
        curves[spec.name] = np.stack(runs)
        per_seed = curves[spec.name].mean(axis=1)
        print(
            f"  {spec.name:>10}: mean normalized return {report.format_ci(per_seed.mean(), *report.bootstrap_ci(per_seed))}"
        )
    report.plot_curves(args.plot, env_id, curves)
    print(f"learning curves written to {args.plot}")


if __name__ == "__main__":
    main()
