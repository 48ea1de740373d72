"""The registered benchmark envs: ``gymnasium.make("icrl/<Name>-v0")`` after ``import icrl_agent``.

Every env exposes its exact model (``env.unwrapped.transition_matrix()``), its start distribution
(``initial_distribution()``), its ``horizon`` and ``optimal_value(gamma=None)`` / ``random_value``.
Registration is idempotent: importing twice registers nothing twice.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from icrl_agent.envs.classic import Chain, DeepSea, RiverSwim, SixArms
from icrl_agent.envs.gridworld import FourRooms, GridWorld, OpenRoom
from icrl_agent.envs.tabular import TabularEnv
from icrl_agent.envs.toy_text import CliffWalking, FrozenLake, GymnasiumToyText, Taxi

# id -> (entry point, max_episode_steps, kwargs). DeepSea has no time limit: it always ends after N
# steps, N being a kwarg. The others keep the horizon their class documents.
_REGISTRATIONS: dict[str, tuple[str, int | None, dict[str, Any]]] = {
    "icrl/RiverSwim-v0": ("icrl_agent.envs.classic:RiverSwim", 20, {}),
    "icrl/SixArms-v0": ("icrl_agent.envs.classic:SixArms", 20, {}),
    "icrl/Chain-v0": ("icrl_agent.envs.classic:Chain", 50, {}),
    "icrl/DeepSea-v0": ("icrl_agent.envs.classic:DeepSea", None, {"size": 10}),
    "icrl/GridWorld-Open-v0": ("icrl_agent.envs.gridworld:OpenRoom", 50, {"size": 5}),
    "icrl/GridWorld-FourRooms-v0": ("icrl_agent.envs.gridworld:FourRooms", 100, {"size": 11}),
    "icrl/FrozenLake4x4-v0": ("icrl_agent.envs.toy_text:FrozenLake", 100, {"map_name": "4x4", "horizon": 100}),
    "icrl/FrozenLake8x8-v0": ("icrl_agent.envs.toy_text:FrozenLake", 200, {"map_name": "8x8", "horizon": 200}),
    "icrl/CliffWalking-v0": ("icrl_agent.envs.toy_text:CliffWalking", 200, {}),
    "icrl/Taxi-v0": ("icrl_agent.envs.toy_text:Taxi", 200, {}),
}
TABULAR_ENV_IDS: tuple[str, ...] = tuple(_REGISTRATIONS)


def register_tabular_envs() -> None:
    """Register the tabular benchmark envs (the ids in ``TABULAR_ENV_IDS``) with Gymnasium; idempotent."""
    for env_id, (entry_point, max_episode_steps, kwargs) in _REGISTRATIONS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=max_episode_steps, kwargs=kwargs)


register_tabular_envs()

try:
    from icrl_agent.envs.minigrid_tabular import MINIGRID_ENV_IDS, register_minigrid_envs
except ImportError:
    MINIGRID_ENV_IDS: tuple[str, ...] = ()
else:
    register_minigrid_envs()

ALL_ENV_IDS: tuple[str, ...] = TABULAR_ENV_IDS + MINIGRID_ENV_IDS

__all__ = [
    "ALL_ENV_IDS",
    "MINIGRID_ENV_IDS",
    "TABULAR_ENV_IDS",
    "Chain",
    "CliffWalking",
    "DeepSea",
    "FourRooms",
    "FrozenLake",
    "GridWorld",
    "GymnasiumToyText",
    "OpenRoom",
    "RiverSwim",
    "SixArms",
    "TabularEnv",
    "Taxi",
    "register_tabular_envs",
]
