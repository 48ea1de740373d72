"""icrl_agent: an in-context reinforcement-learning foundation model for tabular MDPs.

``import icrl_agent`` registers the ``icrl/...`` benchmark envs with Gymnasium. ``Agent`` and
``InContextWrapper`` load on first use (PEP 562), so ``import icrl_agent.stats`` (or ``.envs``,
``.baselines``, ``.solvers``) loads neither the network, the agent nor the pretraining code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from icrl_agent import envs  # noqa: E402, F401  (registers the icrl/... benchmark envs with Gymnasium)

if TYPE_CHECKING:
    from icrl_agent.agent import Agent
    from icrl_agent.wrappers import InContextWrapper

__all__ = ["Agent", "InContextWrapper", "__version__"]

_LAZY = {"Agent": "icrl_agent.agent", "InContextWrapper": "icrl_agent.wrappers"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'icrl_agent' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
