"""Classical tabular baselines on the same surface as :class:`icrl_agent.Agent`.

Each is built as ``Cls(observation_space, action_space, seed=0, horizon=None, reward_max=None, **params)``
on :class:`icrl_agent.base.TabularAgent` (``act / observe / predict / fit / learn / policy / stats``).
Without hints they infer the horizon and reward scale by the one rule of :mod:`icrl_agent.base`.

========================  =====================================================================
agent                     defaults (see each class)
========================  =====================================================================
``OptimisticVI``          ``c=0.003``; unvisited pairs worth ``h * r_hi``; exact sparse VI
``UCBVI``                 ``bonus="hoeffding"``, ``delta=0.1``, ``bonus_scale=1`` (Azar et al.)
``PSRL``                  ``prior_mass=1`` (Dirichlet), Normal-Gamma rewards (0, 1, 2, scale^2)
``VILCB``                 ``beta=0.1`` (``0`` = plain VI); penalty ``beta h r / sqrt(N)``
``QLearning``             ``gamma=1-1/H``, ``epsilon=0.1/sqrt(k+1)``, ``alpha=1/N^0.6``, ``optimism=1``
``Random``                uniform; ``deterministic=True``: a fixed random action per state
========================  =====================================================================
"""

from .optimistic_vi import OptimisticVI
from .psrl import PSRL
from .qlearning import QLearning
from .random_agent import Random
from .ucbvi import UCBVI
from .vilcb import VILCB

__all__ = ["OptimisticVI", "PSRL", "QLearning", "Random", "UCBVI", "VILCB"]

try:  # needs stable-baselines3 (the "sb3" extra)
    from .sb3 import sb3_baseline  # noqa: F401  (re-exported)

    __all__.append("sb3_baseline")
except ImportError:
    pass
