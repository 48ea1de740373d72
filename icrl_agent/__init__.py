"""icrl_agent: an in-context reinforcement-learning foundation model for tabular MDPs."""

__version__ = "0.1.0"
