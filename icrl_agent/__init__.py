"""icrl_agent: an in-context reinforcement-learning foundation model for tabular MDPs.

``import icrl_agent`` registers the ``icrl/...`` benchmark envs with Gymnasium.
"""

__version__ = "0.1.0"

from icrl_agent import envs  # noqa: E402, F401  (registers the icrl/... benchmark envs with Gymnasium)
from icrl_agent.agent import Agent  # noqa: E402
from icrl_agent.wrappers import InContextWrapper  # noqa: E402

__all__ = ["Agent", "InContextWrapper", "__version__"]
