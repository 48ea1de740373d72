"""The command line shared by the probe tools (``tools/two_goals.py``, ``tools/hazard_goal.py``): the online benchmark
on an env that the tool registers itself, so it is in no benchmark table the agents were made on.

A setting is ``key=value:...`` (the env's keyword arguments); one without ``horizon=`` gets the env's own default
horizon, ``HORIZON_PER_SIZE * size`` (a class attribute of the env), where ``size`` is the setting's value of
``size_key`` (else the env's default for it), so the bench sets the env's time limit from it and ends its episodes
where the reference values assume.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from icrl_agent.bench.online import run_online


@dataclass(frozen=True)
class ProbeTool:
    """One probe tool: its env, how a setting gets its horizon, and its script's name and texts.

    :param env_id: the id the tool registers, e.g. ``probe/TwoGoals-v0``
    :param entry_point: the env class; its default horizon is ``entry_point.HORIZON_PER_SIZE * size``
    :param size_key: the setting key the default horizon is counted from (a keyword of the env with a default)
    :param script: the script's path as a command names it, e.g. ``tools/two_goals.py``
    :param description: the command line's description
    :param title: the results table's title
    """

    env_id: str
    entry_point: Any
    size_key: str
    script: str
    description: str
    title: str

    def with_horizon(self, setting: str) -> str:
        """``size=7:hazard=0.1`` -> ``size=7:hazard=0.1:horizon=49`` (with ``HORIZON_PER_SIZE`` 7); a horizon named
        is kept."""
        if "horizon=" in setting:
            return setting
        size = next((int(kv.split("=")[1]) for kv in setting.split(":") if kv.startswith(f"{self.size_key}=")),
                    self.default_size)
        return f"{setting}:horizon={self.entry_point.HORIZON_PER_SIZE * size}"

    @property
    def default_size(self) -> int:
        """The env's default for ``size_key``."""
        return inspect.signature(self.entry_point).parameters[self.size_key].default

    def register(self) -> None:
        """Register the env (once per process) so ``gym.make`` and the bench can build it."""
        if self.env_id not in gym.registry:
            gym.register(self.env_id, entry_point=self.entry_point)

    def build_parser(self) -> argparse.ArgumentParser:
        """The command line (``--envs`` settings, agents, seeds, episodes, workers, ``--out``)."""
        parser = argparse.ArgumentParser(description=self.description)
        parser.add_argument("--envs", required=True,
                            help=f"comma-separated settings, e.g. {self.size_key}={self.default_size}")
        parser.add_argument("--agents", default="icrl,optvi")
        parser.add_argument("--seeds", type=int, default=10)
        parser.add_argument("--episodes", type=int, default=100)
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument("--out", required=True)
        return parser

    def main(self, argv: list[str] | None = None) -> None:
        """Run the online benchmark on the settings and print its table."""
        args = self.build_parser().parse_args(argv)
        self.register()
        envs = ",".join(f"{self.env_id}:{self.with_horizon(setting)}" for setting in args.envs.split(","))
        command = f"python {self.script} " + " ".join(sys.argv[1:] if argv is None else argv)
        result = run_online(envs, args.agents, seeds=args.seeds, episodes=args.episodes, workers=args.workers,
                            out=args.out, command=command, title=self.title)
        print(result.markdown)
