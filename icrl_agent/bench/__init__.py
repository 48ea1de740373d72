"""Benchmarks of icrl_agent against the classical and Stable-Baselines3 baselines (DESIGN §5).

Run them from the command line (``python -m icrl_agent.bench online|offline|speed|pretrain-speed|sweep-optvi``,
or ``icrl-bench``) or from Python with :func:`run_online`, :func:`run_offline` and :func:`run_speed`.
"""

from icrl_agent.bench.agents import AGENTS, AgentSpec, AgentUnavailable, available_agents, register_agent
from icrl_agent.bench.offline import run_offline
from icrl_agent.bench.online import run_online
from icrl_agent.bench.speed import GarnetEnv, run_speed

__all__ = [
    "AGENTS",
    "AgentSpec",
    "AgentUnavailable",
    "GarnetEnv",
    "available_agents",
    "register_agent",
    "run_offline",
    "run_online",
    "run_speed",
]
