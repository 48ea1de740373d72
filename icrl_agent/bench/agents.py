"""The named agents of the benchmark, resolved lazily so that a missing optional piece breaks only its name.

``--agents random,optvi:c=0.01,ppo`` picks agents by name; ``name:key=value:key=value`` overrides
constructor parameters (values parsed as JSON where possible, else kept as strings). Every spec
builds a fresh agent for one env and seed with :meth:`AgentSpec.build`.

Tabular baselines are told the privileged hints ``horizon`` (the env's episode length) and
``reward_max`` (the largest ``|R(s, a)|`` of the env's exact model); ``icrl`` is told nothing; the SB3
baselines read the env's own time limit as Gymnasium envs always do.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from icrl_agent.protocols import TabularPolicy

if TYPE_CHECKING:
    from icrl_agent.baselines.sb3 import SB3Baseline

_BASELINES = "icrl_agent.baselines"
_SB3 = "icrl_agent.baselines.sb3:sb3_baseline"


class AgentUnavailable(RuntimeError):
    """A registered agent whose implementation this install does not provide (yet)."""


@dataclass(frozen=True)
class AgentSpec:
    """How to build one named agent.

    :param name: the name used on the command line and in results
    :param target: ``"module:attribute"`` of the class (tabular) or factory (sb3) to call
    :param kind: ``"tabular"`` (driven step by step with ``act``/``observe``) or ``"sb3"`` (trains itself
        through ``learn(total_episodes=...)``)
    :param hints: whether the agent is told ``horizon`` and ``reward_max``
    :param classical: whether it counts among the classical baselines the headline ratio compares to
    :param args: positional arguments before the env (e.g. the SB3 algorithm)
    :param params: keyword arguments of the constructor
    :param description: one line for listings
    """

    name: str
    target: str
    kind: str = "tabular"
    hints: bool = True
    classical: bool = False
    args: tuple[Any, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def resolve(self) -> Any:
        """The class or factory this spec calls.

        :return: the imported object
        :raises AgentUnavailable: when the module or attribute does not exist in this install
        """
        module_name, _, attr = self.target.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr, None)
        except ImportError as err:
            raise AgentUnavailable(
                f"agent {self.name!r} needs {self.target}, which cannot be imported: {err}"
            ) from err
        if obj is None:
            raise AgentUnavailable(
                f"agent {self.name!r} needs {self.target}, which this install of icrl_agent does not provide yet"
            )
        return obj

    def hint_kwargs(self, env: gym.Env) -> dict[str, Any]:
        """The hints this agent is told about ``env`` (empty when ``hints`` is false)."""
        return model_hints(env) if self.hints else {}

    def build(self, env: gym.Env, seed: int) -> TabularPolicy | SB3Baseline:
        """A fresh agent for ``env``.

        :param env: the environment the agent will act in
        :param seed: the agent's seed
        :return: the agent: a :class:`~icrl_agent.protocols.TabularPolicy` (``kind="tabular"``) or an SB3
            baseline (``kind="sb3"``: it trains itself through ``learn(total_episodes=...)``)
        """
        target = self.resolve()
        if self.kind == "sb3":
            return target(*self.args, env, seed=seed, **self.params)
        kwargs = {**self.hint_kwargs(env), **self.params}
        return target(env.observation_space, env.action_space, *self.args, seed=seed, **kwargs)

    def with_params(self, **params: Any) -> AgentSpec:
        """A copy with more constructor parameters, named ``name:key=value:...``."""
        suffix = "".join(f":{k}={v}" for k, v in params.items())
        return dataclasses.replace(self, name=self.name + suffix, params={**self.params, **params})


def model_hints(env: gym.Env) -> dict[str, Any]:
    """The privileged hints of the classical baselines: ``horizon`` and ``reward_max`` from the exact model.

    An env without an exact model (e.g. Blackjack-v1, which has no transition table) gives only its episode
    horizon (time limit or the bench's cap); the baselines then estimate the reward scale from what they see.

    :param env: an env with an exact model (:func:`icrl_agent.bench.common.exact_model`) or any env
    :return: ``{"horizon": int, "reward_max": float}`` (``{"horizon": int}`` without a model)
    """
    from icrl_agent.bench.common import episode_horizon, exact_model

    model = exact_model(env)
    if model is None:
        return {"horizon": episode_horizon(env)}
    _, R, _ = model.transition_matrix()
    return {"horizon": int(model.horizon), "reward_max": float(np.abs(np.asarray(R)).max())}


def _tabular(name: str, cls: str, description: str, classical: bool = False, **params: Any) -> AgentSpec:
    return AgentSpec(name, f"{_BASELINES}:{cls}", classical=classical, params=params, description=description)


def _sb3(name: str, algo: str) -> AgentSpec:
    return AgentSpec(
        name,
        _SB3,
        kind="sb3",
        hints=False,
        args=(algo,),
        description=f"Stable-Baselines3 {algo}, small-budget defaults",
    )


AGENTS: dict[str, AgentSpec] = {
    spec.name: spec
    for spec in (
        _tabular("random", "Random", "uniformly random actions"),
        _tabular("qlearning", "QLearning", "tabular Q-learning", classical=True),
        _tabular("ucbvi", "UCBVI", "UCB-VI (Hoeffding bonus)", classical=True),
        _tabular("optvi", "OptimisticVI", "exact VI + optimism, replanned per episode", classical=True),
        _tabular("psrl", "PSRL", "posterior sampling RL", classical=True),
        _tabular("vilcb", "VILCB", "offline VI with lower-confidence bonus"),
        _tabular("vi", "VILCB", "offline VI on the empirical MDP (VI-LCB with beta=0)", beta=0.0),
        _sb3("ppo", "PPO"),
        _sb3("dqn", "DQN"),
        _sb3("a2c", "A2C"),
        AgentSpec(
            "icrl",
            "icrl_agent:Agent",
            hints=False,
            description="the pretrained in-context agent (told nothing)",
        ),
    )
}


def register_agent(spec: AgentSpec) -> None:
    """Add (or replace) a named agent, e.g. a variant to compare in your own runs.

    :param spec: the agent's spec; its ``target`` must be importable in worker processes
    """
    AGENTS[spec.name] = spec


def available_agents() -> list[str]:
    """Names of the registered agents whose implementation this install provides."""
    names = []
    for name, spec in AGENTS.items():
        try:
            spec.resolve()
        except AgentUnavailable:
            continue
        names.append(name)
    return names


def get_agent(name: str) -> AgentSpec:
    """The spec of ``name`` or ``name:key=value:...``.

    :param name: a registered name, optionally with parameter overrides
    :return: the spec
    :raises ValueError: for an unknown name or a malformed override, listing the valid names
    """
    from icrl_agent.bench.common import did_you_mean, parse_value

    base, *overrides = name.strip().split(":")
    if base not in AGENTS:
        raise ValueError(f"unknown agent {base!r}; valid agents: {', '.join(AGENTS)}.{did_you_mean(base, list(AGENTS))}")
    params = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(
                f"bad agent parameter {item!r} in {name!r}: write name:key=value, e.g. optvi:c=0.01"
            )
        params[key] = parse_value(value)
    return AGENTS[base].with_params(**params) if params else AGENTS[base]


def parse_agents(names: str | Sequence[str]) -> list[AgentSpec]:
    """Specs of a comma-separated list (or a list) of agent names, checked before anything runs.

    :param names: e.g. ``"random,optvi:c=0.01,ppo"``
    :return: the specs, in order
    :raises ValueError: for an unknown name, listing the valid ones
    """
    items = names.split(",") if isinstance(names, str) else list(names)
    specs = [get_agent(item) for item in items if item.strip()]
    if not specs:
        raise ValueError(f"no agent given; valid agents: {', '.join(AGENTS)}")
    return specs
