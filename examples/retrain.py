"""Retrain: a small pretraining run on synthetic MDPs, then the new weights as an agent on RiverSwim.

    pip install -e ".[pretraining]"     # tensorboard + pyyaml
    python examples/retrain.py                                    # tiny config, 200 steps, < 1 min on a CPU
    python examples/retrain.py --steps 1000 --out runs/my_weights # keep the weights (and TensorBoard logs)

This is ``python -m icrl_agent.pretraining --config configs/tiny.yaml --steps N --out DIR`` through the
pretraining package's Python API (``load_config`` + ``train``): stage 1 imitates the optimal policies of
sampled MDPs, stage 2 tunes the optimism by evolution strategies. The run writes its weights
(``.safetensors`` + ``.json`` model card) into ``--out`` (default: a temporary directory, deleted at the
end). ``Agent.from_pretrained(path, ...)`` then loads them, and the new agent and the shipped one each
learn RiverSwim (or ``--env``) in context for ``--episodes`` episodes; the script prints their mean returns. The tiny
config trains a tiny network for seconds: do not expect it to match the shipped weights
(``configs/v2.yaml``, ``configs/v2_1.yaml``, ``configs/v2_2.yaml``, ``configs/v2_3.yaml``, ``configs/v2_4.yaml`` then
``configs/v2_5.yaml`` reproduce those, then ``python -m icrl_agent.pretraining missing-mass`` adds the head of
icrl-v2.6, v2.7 and v2.8, which differ by planning rules only; docs/pretraining.md has the commands).

The shipped agent (icrl-v2.8) at the defaults (RiverSwim, 50 episodes, ``agent.learn``) ends with the optimal
greedy policy (swim right in every state) on 10 of 10 seeds 0-9, its last 10 episodes averaging 2.4 to 4.1
(optimal expected return 3.397; 3.30 at the default seed 0; icrl-v2.7, v2.6, v2.5, v2.4, v2.3, v2.2 and v2.1 did the same).
Measured 2026-12-01 with
``python -c "from icrl_agent import Agent; from icrl_agent.env_info import make_env; env = make_env('icrl/RiverSwim-v0');
print([sum(Agent(env.observation_space, env.action_space, seed=s).learn(env, total_episodes=50, seed=s)[-10:]) / 10
for s in range(10)])"``.
"""

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import icrl_agent  # noqa: F401  (registers the icrl/... envs)
from icrl_agent import Agent
from icrl_agent.env_info import env_id_arg, env_info, make_env
from icrl_agent.pretraining import load_config, train

TINY_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tiny.yaml"


def pretrain(config: str, out: Path, steps: int, seed: int) -> str:
    """Run the pretraining into ``out`` (as the CLI's ``--out``); the stem of the weights it wrote."""
    cfg = load_config(config)
    cfg = replace(
        cfg,
        stage1=replace(cfg.stage1, steps=steps),
        seed=seed,
        progress=False,
        out_dir=str(out),
        log_dir=str(out / "tb"),
        checkpoint_dir=str(out / "checkpoints"),
    )
    start = time.perf_counter()
    result = train(cfg, command=f"examples/retrain.py --config {config} --steps {steps}")
    metrics = result["metrics"]
    online = [v for k, v in metrics.items() if k.startswith("final/") and k.endswith("/online_return")]
    print(f"pretrained {result['step']} steps + {result['generation']} ES generations in "
          f"{time.perf_counter() - start:.1f} s: stage-1 loss {metrics.get('stage1/loss', float('nan')):.3f}, "
          f"accuracy {metrics.get('stage1/accuracy', float('nan')):.3f}, normalized online return on "
          f"prior MDPs {np.mean(online) if online else float('nan'):.3f}")
    return result["weights"]


def learn_riverswim(agent: Agent, env: gym.Env, episodes: int, seed: int) -> list[float]:
    """The agent learns the env (RiverSwim by default) in context for ``episodes`` episodes; their returns."""
    return agent.learn(env, total_episodes=episodes, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--config", default=str(TINY_CONFIG), help="a pretraining config (YAML or JSON)")
    parser.add_argument("--steps", type=int, default=200, help="stage-1 optimizer steps")
    parser.add_argument("--out", help="run directory to keep (default: a temporary one, deleted at the end)")
    parser.add_argument(
        "--env", type=env_id_arg, default="icrl/RiverSwim-v0",
        help="the env both agents then learn: any Gymnasium id with finite spaces (FrozenLake-v1, Taxi-v4, ...)",
    )
    parser.add_argument("--episodes", type=int, default=50, help="episodes of the env for each agent")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a tiny network gains nothing from more)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pretraining and the agents")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="icrl-retrain-") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        weights = pretrain(args.config, out, args.steps, args.seed)
        print(f"weights written to {weights}.safetensors (+ .json model card)")

        info = env_info(args.env)
        env = make_env(args.env)
        print(f"{info.describe()}; {args.episodes} episodes each:")
        agents = {
            "retrained": Agent.from_pretrained(weights, env.observation_space, env.action_space, seed=args.seed),
            "shipped": Agent(env.observation_space, env.action_space, seed=args.seed),
        }
        for name, agent in agents.items():
            returns = learn_riverswim(agent, env, args.episodes, args.seed)
            last = returns[-10:]
            print(f"  {name:>9} agent: mean return {np.mean(returns):.3f}, last {len(last)} episodes "
                  f"{np.mean(last):.3f}")


if __name__ == "__main__":
    main()
