"""Benchmarks of icrl_agent against the classical and Stable-Baselines3 baselines.

Run them from the command line (``python -m icrl_agent.bench online|offline|speed|sweep-optvi``, or
``icrl-bench``) or from Python with :func:`run_online`, :func:`run_offline` and :func:`run_speed`, which
return typed results (:class:`OnlineResult`, :class:`OfflineResult`, :class:`SpeedResult`). The
pretraining diagnostics live beside the pretraining code: ``python -m icrl_agent.pretraining evaluate``.
"""

from icrl_agent.bench.agents import AGENTS, AgentSpec, AgentUnavailable, available_agents, register_agent
from icrl_agent.bench.offline import run_offline
from icrl_agent.bench.online import run_online
from icrl_agent.bench.results import OfflineResult, OnlineResult, SpeedResult
from icrl_agent.bench.speed import GarnetEnv, run_speed

__all__ = [
    "AGENTS",
    "AgentSpec",
    "AgentUnavailable",
    "GarnetEnv",
    "OfflineResult",
    "OnlineResult",
    "SpeedResult",
    "available_agents",
    "register_agent",
    "run_offline",
    "run_online",
    "run_speed",
]
