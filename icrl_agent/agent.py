"""The pretrained in-context agent: what users touch.

``Agent`` keeps the running sufficient statistics of whatever finite env it meets (via
:class:`~icrl_agent.base.TabularAgent`), replans by the rule of :mod:`icrl_agent.planning_agent`, and asks
the pretrained network for each plan: the network reads the
statistics and adjusts the empirical MDP (corrected rewards, optimism bonuses, an unknown successor,
the scale of rewards not yet seen); exact value iteration inside the network turns that into ``Q``.
The agent acts greedily in the optimistic ``Q`` of its current plan, so exploration commits for an
episode (PSRL-like), and greedily in the non-optimistic ``Q`` with ``deterministic=True``.

It is told neither the horizon nor the reward scale: the horizon comes from episode ends (the base
class's rule) and the scale of unseen rewards from the network.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from icrl_agent.checkpoint import checkpoint_sha256, load_checkpoint
from icrl_agent.model import IcrlModel
from icrl_agent.planning_agent import BonusLayers, PlanningAgent
from icrl_agent.spaces import space_from_signature

SHIPPED_WEIGHTS = "icrl-v2.8"
"""Stem of the shipped weights inside the package's ``weights/`` folder."""

_SAVE_FORMAT = "icrl_agent-agent"
_SAVE_VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"
_META_KEYS = ("weights", "seed", "rng", "hints", "rewards_seen", "n_streams", "replan", "plans", "stats")


def shipped_weights_path() -> Path:
    """Path of the shipped weights file (``.safetensors``; its model card sits beside it as ``.json``)."""
    return Path(str(resources.files("icrl_agent") / "weights" / f"{SHIPPED_WEIGHTS}.safetensors"))


class Agent(PlanningAgent):
    """The pretrained in-context RL agent for any finite Gymnasium env.

    :param observation_space: a finite Gymnasium space (Discrete with any ``start``, MultiDiscrete,
        MultiBinary, Tuple/Dict of those); states are indexed as they are met
    :param action_space: a ``gymnasium.spaces.Discrete`` space (any ``start``)
    :param seed: seed of the agent's random generator (tie-breaking, unseen states)
    :param horizon: optional hint: the episode length; inferred from episode ends otherwise
    :param reward_max: accepted for the baselines' signature and kept in ``reward_scale``; the network infers
        the scale of unseen rewards itself and does not read it
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
            name = SHIPPED_WEIGHTS if weights is None else _shipped_name(path)
            source = {"source": "shipped", "name": name} if name else {
                "source": "path", "path": str(path.resolve())}
            self.weights = {**source, "sha256": checkpoint_sha256(path)}
        else:
            self.weights = {"source": "in-memory"}
        self.model = model.to(device).eval()
        self.device = device

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

    def _explore_tie_tolerance(self) -> float:
        config = self.model.config
        if config.explore_near_tie_when != "always":
            any_reward, every_reward_ended = self._positive_rewards_seen()
            if not every_reward_ended or (config.explore_near_tie_when == "terminal_rewards" and not any_reward):
                return 0.0
        return config.explore_near_tie_tolerance

    def _positive_rewards_seen(self) -> tuple[bool, bool]:
        """``(some tried pair's mean reward is positive, every such pair has ended an episode)``; read once per plan."""
        sparse = self.stats.sparse()
        rewarded = (sparse.counts > 0) & (sparse.reward_mean > 0)
        return bool(rewarded.any()), bool((sparse.terminal_counts[rewarded] > 0).all())

    def _make_plan(self, horizon: int, optimistic: bool) -> np.ndarray | BonusLayers:
        with torch.no_grad():
            out = self.model.forward_sparse(
                self.stats.sparse(), horizon, optimism=optimistic, horizon_known=self.horizon_known
            )
        top = float(out.q.max())  # NaN propagates; invalid actions hold -inf
        if not math.isfinite(top):
            kind = "exploring" if optimistic else "exploitation"
            raise FloatingPointError(
                f"Agent: the {kind} plan over {horizon} steps has a non-finite value ({top}), so no action can be "
                "ranked. This is a bug of the model, not of your env: please report it with the agent file "
                "(agent.save(path) keeps every statistic seen so far)."
            )
        if out.q_by_bonuses_left is not None and out.takes_bonus is not None:
            return BonusLayers(
                out.q_by_bonuses_left[0].to(dtype=torch.float64, device="cpu").numpy(),
                out.takes_bonus[0].cpu().numpy(),
            )
        return out.q[0].to(dtype=torch.float64, device="cpu").numpy()

    # ------------------------------------------------------------------ save / load

    def save(self, path: str | os.PathLike) -> None:
        """Write the agent at exactly ``path``: statistics, weights reference, RNG state and current plans.

        The file is an ``.npz`` archive of plain arrays plus JSON (no pickle). The weights themselves are
        not copied: the file names them (shipped, or a checkpoint path) with their sha256.

        :param path: destination file
        """
        arrays, meta = self.stats.state_dict()
        plan_arrays, plan_meta = self.plan_state()
        out = {**{f"stats/{k}": v for k, v in arrays.items()}, **plan_arrays}
        agent_meta = {
            "format": _SAVE_FORMAT,
            "format_version": _SAVE_VERSION,
            "weights": self.weights,
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "hints": {"horizon": self.horizon_hint, "reward_max": self.reward_max_hint},
            "rewards_seen": [self.reward_min_seen, self.reward_max_seen],
            "n_streams": self._n_streams,
            **plan_meta,
            "stats": meta,
        }
        out["meta"] = np.array(json.dumps(agent_meta))
        with open(path, "wb") as f:
            np.savez(f, **out)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle

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
        self.load_plan_state(arrays, meta)


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


def _shipped_name(path: Path) -> str | None:
    """The name of a weights file the package ships (``icrl-v1``, ...) if ``path`` is one, else None."""
    folder = shipped_weights_path().parent
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    try:
        shipped = stem.resolve().parent == folder.resolve() and (folder / f"{stem.name}.safetensors").is_file()
    except OSError:
        return None
    return stem.name if shipped else None


def _weights_path(ref: dict[str, str]) -> Path | None:
    """The ``weights=`` argument that rebuilds a saved weights reference (None: the default shipped weights).

    A reference to shipped weights that are no longer the default (an agent saved with icrl-v1) loads that
    file, which the package keeps, so saved agents survive an update of the default weights.
    """
    if ref.get("source") == "shipped":
        name = ref.get("name", SHIPPED_WEIGHTS)
        return None if name == SHIPPED_WEIGHTS else shipped_weights_path().with_name(f"{name}.safetensors")
    if ref.get("source") == "path":
        return Path(ref["path"])
    raise ValueError(
        f"this agent file refers to weights {ref!r} that were never saved to disk: save the model with "
        "icrl_agent.checkpoint.save_checkpoint and build the agent with Agent.from_pretrained"
    )


