"""The pretrained in-context agent: what users touch.

``Agent`` keeps the running sufficient statistics of whatever finite env it meets (via
:class:`~icrl_agent.base.TabularAgent`) and asks the pretrained network for a plan: the network reads the
statistics and adjusts the empirical MDP (corrected rewards, optimism bonuses, an unknown successor,
the scale of rewards not yet seen); exact value iteration inside the network turns that into ``Q``.
The agent acts greedily in the optimistic ``Q`` of its current plan, so exploration commits for an
episode (PSRL-like), and greedily in the non-optimistic ``Q`` with ``deterministic=True``.

It is told neither the horizon nor the reward scale: the horizon comes from episode ends (the base
class's rule) and the scale of unseen rewards from the network.
"""

from __future__ import annotations

import json
import os
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from icrl_agent.base import TabularAgent, Transition
from icrl_agent.checkpoint import checkpoint_sha256, load_checkpoint
from icrl_agent.model import IcrlModel
from icrl_agent.spaces import space_from_signature

SHIPPED_WEIGHTS = "icrl-v1"
"""Stem of the shipped weights inside the package's ``weights/`` folder."""

_SAVE_FORMAT = "icrl_agent-agent"
_SAVE_VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"
_META_KEYS = ("weights", "seed", "rng", "hints", "rewards_seen", "n_streams", "replan", "plans", "stats")


def shipped_weights_path() -> Path:
    """Path of the shipped weights file (``.safetensors``; its model card sits beside it as ``.json``)."""
    return Path(str(resources.files("icrl_agent") / "weights" / f"{SHIPPED_WEIGHTS}.safetensors"))


class _Plan:
    """A cached ``Q[k-1, s, a]`` (k steps to go) and what it was computed from, to know when to redo it."""

    def __init__(self, q: np.ndarray, version: int, horizon: int, counts: np.ndarray):
        self.q = q
        self.version = version
        self.horizon = horizon
        self.counts = counts  # N[s, a] when planned: a pair whose count doubled since triggers a new plan

    def scores(self, state: int, step: int) -> np.ndarray:
        return self.q[self.horizon - 1 - step, state]


class Agent(TabularAgent):
    """The pretrained in-context RL agent for any finite Gymnasium env.

    :param observation_space: a finite Gymnasium space (Discrete with any ``start``, MultiDiscrete,
        MultiBinary, Tuple/Dict of those); states are indexed as they are met
    :param action_space: a ``gymnasium.spaces.Discrete`` space (any ``start``)
    :param seed: seed of the agent's random generator (tie-breaking, unseen states)
    :param horizon: optional hint: the episode length; inferred from episode ends otherwise
    :param reward_max: optional hint: the largest |reward|; the network estimates it otherwise
    :param weights: path of a checkpoint to load instead of the shipped weights (see :meth:`from_pretrained`)
    :param model: an in-memory network to use instead (e.g. fresh from a training loop; not saved with the agent)
    :param device: torch device for the network (``"cpu"`` or ``"cuda"``)
    :raises TypeError: if a space is not supported (e.g. ``Box``: discretize it first)
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        seed: int = 0,
        horizon: int | None = None,
        reward_max: float | None = None,
        *,
        weights: str | os.PathLike | None = None,
        model: IcrlModel | None = None,
        device: str = "cpu",
    ):
        super().__init__(observation_space, action_space, seed=seed, horizon=horizon, reward_max=reward_max)
        if model is not None and weights is not None:
            raise ValueError("give either weights= (a checkpoint path) or model= (a network), not both")
        if model is None:
            path = shipped_weights_path() if weights is None else Path(weights)
            model, _ = load_checkpoint(path, device=device)
            source = {"source": "shipped", "name": SHIPPED_WEIGHTS} if weights is None else {
                "source": "path", "path": str(Path(weights).resolve())}
            self.weights = {**source, "sha256": checkpoint_sha256(path)}
        else:
            self.weights = {"source": "in-memory"}
        self.model = model.to(device).eval()
        self.device = device
        self._plans: dict[bool, _Plan | None] = {True: None, False: None}
        self._replan_requested = True  # at the next act: each episode start, after fit, after a load
        self._news_since_plan = False  # a new state or a doubled count since the exploring plan was made
        self._steps_since_plan = 0

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, observation_space: spaces.Space, action_space: spaces.Space, **kwargs: Any
    ) -> Agent:
        """An agent with the weights of a checkpoint (``.safetensors`` + ``.json`` card, never a pickle).

        :param path: the checkpoint: a directory, a stem, or either of its two files
        :param observation_space: the env's observation space
        :param action_space: the env's action space
        :param kwargs: any other :class:`Agent` argument (``seed``, ``device``, hints)
        :return: the agent
        :raises ValueError: if the checkpoint is corrupt, a pickle, or does not match the model
        """
        return cls(observation_space, action_space, weights=path, **kwargs)

    # ------------------------------------------------------------------ planning

    def _action_scores(self, state: int, step: int, deterministic: bool) -> np.ndarray:
        plan = self._plan_for(optimistic=not deterministic)
        if state >= plan.q.shape[1]:
            return np.zeros(self.n_actions)  # met since the plan was made: every action ties until the next
        return plan.scores(state, step)

    def _plan_for(self, optimistic: bool) -> _Plan:
        plan = self._plans[optimistic]
        if plan is None or self._stale(plan, optimistic):
            plan = self._plans[optimistic] = self._compute_plan(optimistic)
        return plan

    def _stale(self, plan: _Plan, optimistic: bool) -> bool:
        if plan.version == self.stats.version:
            return False
        if not optimistic or plan.horizon != self.horizon:
            return True  # the exploitation plan always reflects the latest statistics
        if self._replan_requested:
            return True
        # Mid-episode news (a new state, a doubled count) replans at most every horizon/20 steps, so that
        # act stays cheap while a large env is being discovered.
        return self._news_since_plan and self._steps_since_plan >= max(1, plan.horizon // 20)

    def _compute_plan(self, optimistic: bool) -> _Plan:
        sparse = self.stats.sparse()
        with torch.no_grad():
            out = self.model.forward_sparse(sparse, self.horizon, optimism=optimistic)
        q = out.q[0].to(dtype=torch.float64, device="cpu").numpy()
        if optimistic:
            self._replan_requested = self._news_since_plan = False
            self._steps_since_plan = 0
        return _Plan(q, self.stats.version, self.horizon, sparse.counts.copy())

    def _on_update(self, transition: Transition) -> None:
        # The exploring plan is redone at each episode start and when the count of a pair just taken has
        # doubled since it was made: exploration commits for an episode, yet reacts to what it learned.
        plan = self._plans[True]
        self._steps_since_plan += 1
        if transition.terminated or transition.truncated or plan is None:
            self._replan_requested = True
            return
        s, a, known = transition.state, transition.action, plan.counts.shape[0]
        planned = plan.counts[s, a] if s < known else 0
        new_state = transition.next_state is not None and transition.next_state >= known
        if new_state or self.stats.count(s, a) >= 2 * max(planned, 1):
            self._news_since_plan = True

    def _on_fit(self, dataset: Any) -> None:
        self._replan_requested = True

    def reset_episode(self, stream: int = 0) -> None:
        super().reset_episode(stream)
        self._replan_requested = True

    # ------------------------------------------------------------------ save / load

    def save(self, path: str | os.PathLike) -> None:
        """Write the agent at exactly ``path``: statistics, weights reference, RNG state and current plans.

        The file is an ``.npz`` archive of plain arrays plus JSON (no pickle). The weights themselves are
        not copied: the file names them (shipped, or a checkpoint path) with their sha256.

        :param path: destination file
        """
        arrays, meta = self.stats.state_dict()
        out = {f"stats/{k}": v for k, v in arrays.items()}
        plans = {}
        for optimistic, plan in self._plans.items():
            if plan is not None:
                tag = "explore" if optimistic else "exploit"
                out[f"plan/{tag}/q"] = plan.q
                out[f"plan/{tag}/counts"] = plan.counts
                plans[tag] = {"version": plan.version, "horizon": plan.horizon}
        agent_meta = {
            "format": _SAVE_FORMAT,
            "format_version": _SAVE_VERSION,
            "weights": self.weights,
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "hints": {"horizon": self.horizon_hint, "reward_max": self.reward_max_hint},
            "rewards_seen": [self.reward_min_seen, self.reward_max_seen],
            "n_streams": self._n_streams,
            "replan": [self._replan_requested, self._news_since_plan, self._steps_since_plan],
            "plans": plans,
            "stats": meta,
        }
        out["meta"] = np.array(json.dumps(agent_meta))
        with open(path, "wb") as f:
            np.savez(f, **out)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
        device: str = "cpu",
    ) -> Agent:
        """Restore an agent written by :meth:`save`, so that its later actions match the original's.

        :param path: the file written by :meth:`save`
        :param observation_space: the env's observation space (default: rebuilt from the file)
        :param action_space: the env's action space (default: rebuilt from the file)
        :param device: torch device for the network
        :return: the agent
        :raises ValueError: if the file is not an agent file (a pickle is refused unread), is corrupt, or its
            weights no longer match their recorded sha256
        """
        arrays, meta = _read_agent_file(path)
        obs_space = observation_space or space_from_signature(meta["stats"]["observation_space"])
        act_space = action_space or space_from_signature(meta["stats"]["action_space"])
        weights = _weights_path(meta["weights"])
        agent = cls(obs_space, act_space, seed=meta["seed"], weights=weights, device=device, **meta["hints"])
        if agent.weights["sha256"] != meta["weights"]["sha256"]:
            raise ValueError(
                f"the weights at {weights or shipped_weights_path()} changed since the agent was saved (sha256 "
                "mismatch): restore the checkpoint the agent was saved with"
            )
        stats_arrays = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("stats/")}
        agent.stats.load_state_dict(stats_arrays, meta["stats"])
        try:
            agent._restore_state(arrays, meta)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{path} is a corrupt agent file ({type(err).__name__}: {err}): pass the path given to Agent.save"
            ) from err
        return agent

    def _restore_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Restore what :meth:`save` wrote besides the statistics: RNG, rewards seen, streams and plans."""
        self.rng.bit_generator.state = meta["rng"]
        self.reward_min_seen, self.reward_max_seen = meta["rewards_seen"]
        self._n_streams = meta["n_streams"]
        self._replan_requested, self._news_since_plan, self._steps_since_plan = meta["replan"]
        for tag, info in meta["plans"].items():
            plan = _Plan(arrays[f"plan/{tag}/q"], info["version"], info["horizon"], arrays[f"plan/{tag}/counts"])
            self._plans[tag == "explore"] = plan


def _read_agent_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with open(path, "rb") as f:
        head = f.read(4)
    if head != _ZIP_MAGIC:
        raise ValueError(
            f"{path} is not an agent file written by Agent.save (it does not start like an .npz archive; "
            "pickles are never loaded): pass the path given to Agent.save"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable agent file ({err}): pass the path given to Agent.save") from err
    if not isinstance(meta, dict) or meta.get("format") != _SAVE_FORMAT:
        kind = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{path} is not an agent file (format {kind!r}): pass an Agent.save file")
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{path} is a corrupt agent file (missing {missing}): pass the path given to Agent.save")
    return arrays, meta


def _weights_path(ref: dict[str, str]) -> Path | None:
    """The ``weights=`` argument that rebuilds a saved weights reference (None: the shipped weights)."""
    if ref.get("source") == "shipped":
        return None
    if ref.get("source") == "path":
        return Path(ref["path"])
    raise ValueError(
        f"this agent file refers to weights {ref!r} that were never saved to disk: save the model with "
        "icrl_agent.checkpoint.save_checkpoint and build the agent with Agent.from_pretrained"
    )


