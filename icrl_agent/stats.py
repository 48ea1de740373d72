"""Running sufficient statistics of a tabular MDP: what every agent (and the model) reads.

For each known state ``s`` (an id from :class:`~icrl_agent.spaces.ObservationIndexer`), action index
``a`` and successor ``s'``: visit counts ``N[s, a]``, sparse transition counts ``N[s, a, s']``, reward sum
and sum of squares, counts into an absorbing terminal node, and how often each state started an
episode. Updates are O(1); :meth:`SufficientStats.dense` and :meth:`SufficientStats.sparse` export
NumPy arrays (read-only, cached until the next change).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from icrl_agent.spaces import Key, ObservationIndexer, discrete_action_space, space_signature

_FORMAT = "icrl_agent.SufficientStats/1"
_REQUIRED = ("observations", "actions", "rewards", "next_observations", "terminations")
_META_KEY = "__meta__"


def _readonly(*arrays: np.ndarray) -> None:
    for arr in arrays:
        arr.flags.writeable = False


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape), dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass(frozen=True)
class DenseStats:
    """Dense NumPy export of :class:`SufficientStats` (``S`` known states, ``A`` actions).

    :param counts: visits ``N[s, a]``, int64 ``[S, A]``
    :param reward_mean: mean reward per ``(s, a)``, 0 where unvisited, float64 ``[S, A]``
    :param reward_var: population variance of the reward per ``(s, a)``, 0 where ``N < 2``, float64 ``[S, A]``
    :param transitions: counts ``N[s, a, s']`` into known (non-terminal) states, int64 ``[S, A, S]``
    :param terminal_counts: transitions of ``(s, a)`` that terminated the episode, int64 ``[S, A]``
    :param initial_counts: how many episodes started in each state, int64 ``[S]``
    """

    counts: np.ndarray
    reward_mean: np.ndarray
    reward_var: np.ndarray
    transitions: np.ndarray
    terminal_counts: np.ndarray
    initial_counts: np.ndarray

    @property
    def p_hat(self) -> np.ndarray:
        """Empirical ``P(s' | s, a)`` over known states, float64 ``[S, A, S]`` (0 where ``N = 0``)."""
        return _safe_divide(self.transitions, self.counts[:, :, None])

    @property
    def terminal_prob(self) -> np.ndarray:
        """Empirical probability that ``(s, a)`` terminates, float64 ``[S, A]`` (0 where ``N = 0``)."""
        return _safe_divide(self.terminal_counts, self.counts)


@dataclass(frozen=True)
class SparseStats:
    """Sparse export: the ``[S, A]`` arrays of :class:`DenseStats` plus transitions as COO edges.

    Edge ``i`` says ``(s, a) -> s'`` was seen ``count[i]`` times, with ``src[i] = s * A + a`` and
    ``dst[i] = s'``; int64, sorted by ``(src, dst)``. Terminal transitions are in ``terminal_counts``.
    """

    counts: np.ndarray
    reward_mean: np.ndarray
    reward_var: np.ndarray
    terminal_counts: np.ndarray
    initial_counts: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    count: np.ndarray

    @property
    def n_states(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.counts.shape[1])

    @property
    def p_hat(self) -> np.ndarray:
        """Empirical ``P(dst | src)`` per edge, float64 ``[E]``."""
        return self.count / self.counts.reshape(-1)[self.src]

    @property
    def terminal_prob(self) -> np.ndarray:
        """Empirical probability that ``(s, a)`` terminates, float64 ``[S, A]`` (0 where ``N = 0``)."""
        return _safe_divide(self.terminal_counts, self.counts)


def _check_reward(reward: Any) -> float:
    ok_type = isinstance(reward, (int, float, np.integer, np.floating)) and not isinstance(
        reward, (bool, np.bool_)
    )
    if isinstance(reward, np.ndarray) and reward.ndim == 0 and reward.dtype.kind in "iuf":
        ok_type = True
    if not ok_type:
        raise ValueError(f"Reward {reward!r} is not a real number: pass a Python or NumPy int/float scalar.")
    value = float(reward)
    if not math.isfinite(value):
        raise ValueError(
            f"Reward {reward!r} is not finite: fix or clip the env's rewards before observing them."
        )
    return value


def _check_flag(flag: Any, name: str) -> bool:
    # Offline datasets often store flags as 0/1 ints or floats.
    if isinstance(flag, (bool, np.bool_)) or (isinstance(flag, (int, float, np.number)) and flag in (0, 1)):
        return bool(flag)
    if isinstance(flag, np.ndarray) and flag.ndim == 0 and flag.dtype.kind in "biuf" and flag in (0, 1):
        return bool(flag)
    raise ValueError(f"{name} must be a bool, got {flag!r}: pass the flag exactly as env.step returns it.")


def _column_length(column: Any, space: spaces.Space | None, name: str) -> int:
    """Number of rows of a dataset column; Dict/Tuple observations may come as one column per component."""
    if isinstance(space, spaces.Dict) and isinstance(column, Mapping):
        lengths = {
            _column_length(column[k], sub, f"{name}[{k!r}]") for k, sub in space.spaces.items() if k in column
        }
        if set(column) != set(space.spaces) or len(lengths) != 1:
            raise ValueError(
                f"dataset[{name!r}] must have the keys {sorted(map(str, space.spaces))} and equal lengths"
            )
        return lengths.pop()
    if isinstance(space, spaces.Tuple) and isinstance(column, tuple):
        lengths = {_column_length(c, s, name) for c, s in zip(column, space.spaces, strict=False)}
        if len(column) != len(space.spaces) or len(lengths) != 1:
            raise ValueError(f"dataset[{name!r}] must be a tuple of {len(space.spaces)} equal-length columns")
        return lengths.pop()
    try:
        return len(column)
    except TypeError:
        raise ValueError(
            f"dataset[{name!r}] must be an array or sequence of rows, got {type(column).__name__}"
        ) from None


def _column_row(column: Any, space: spaces.Space, i: int) -> Any:
    if isinstance(space, spaces.Dict) and isinstance(column, Mapping):
        return {k: _column_row(column[k], sub, i) for k, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple) and isinstance(column, tuple):
        return tuple(_column_row(c, s, i) for c, s in zip(column, space.spaces, strict=True))
    return column[i]


class SufficientStats:
    """Running sufficient statistics of a tabular MDP, updated one transition at a time in O(1).

    :param observation_space: a finite Gymnasium space (see :class:`~icrl_agent.spaces.ObservationIndexer`)
    :param action_space: a ``gymnasium.spaces.Discrete`` space (any ``start``)
    :raises TypeError: if either space is not supported
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        self.observation_space = observation_space
        self.action_space = action_space
        self.n_actions, self.action_start = discrete_action_space(action_space)
        self.indexer = ObservationIndexer(observation_space)
        self._reset_counts(capacity=16)
        self.version = 0

    def _reset_counts(self, capacity: int) -> None:
        A = self.n_actions
        self._counts = np.zeros((capacity, A), np.int64)
        self._reward_sum = np.zeros((capacity, A), np.float64)
        self._reward_sq = np.zeros((capacity, A), np.float64)
        self._terminal = np.zeros((capacity, A), np.int64)
        self._initial = np.zeros(capacity, np.int64)
        self._succ: dict[int, dict[int, int]] = {}
        # Steps taken in each open episode, per stream of episodes (one per env feeding these statistics:
        # the sub-envs of a vector env interleave their episodes).
        self._open_steps: dict[int, int] = {}
        self.episode_lengths: list[int] = []
        self.episode_truncated: list[bool] = []
        self.max_truncated_length = 0
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ queries

    @property
    def n_states(self) -> int:
        """Number of known states ``S``."""
        return len(self.indexer)

    @property
    def episode_step(self) -> int:
        """Steps taken so far in the open episode of stream 0 (the only stream of a plain loop)."""
        return self._open_steps.get(0, 0)

    def stream_step(self, stream: int) -> int:
        """Steps taken so far in the open episode of ``stream``."""
        return self._open_steps.get(stream, 0)

    @property
    def n_episodes(self) -> int:
        """Number of finished episodes (terminated or truncated)."""
        return len(self.episode_lengths)

    @property
    def n_transitions(self) -> int:
        """Total number of transitions counted."""
        return int(self._counts.sum())

    def count(self, state: int, action: int) -> int:
        """Visits ``N(s, a)`` of a state id and action index (0 for a state not yet known)."""
        return int(self._counts[state, action]) if state < self.n_states else 0

    def state_id(self, obs: Any, add: bool = False) -> int | None:
        """State id of ``obs``; None if unknown and ``add`` is False.

        :param obs: an observation of the observation space
        :param add: give an unknown observation the next state id (a change: bumps ``version``)
        :raises ValueError: if ``obs`` is not in the observation space
        """
        key = self.indexer.key(obs)
        if not add:
            return self.indexer.lookup_key(key)
        known = len(self.indexer)
        state_id = self.indexer.index_key(key)
        if len(self.indexer) != known:
            self._grow()
            self.version += 1
        return state_id

    def observation(self, state_id: int) -> Any:
        """The observation of a state id (row ``state_id`` of :meth:`dense` / :meth:`sparse`): the inverse of
        :meth:`state_id`.

        :param state_id: an id ``0..n_states-1``
        :return: the observation, in the space's own format (an int for Discrete, an array, tuple or dict)
        :raises IndexError: if ``state_id`` is not a known state
        """
        return self.indexer.observation(int(state_id))

    def action_index(self, action: Any) -> int:
        """Index ``0..A-1`` of a Gymnasium action (``action - start``).

        :raises ValueError: if ``action`` is not an integer inside the action space
        """
        if isinstance(action, np.ndarray) and action.ndim == 0 and action.dtype.kind in "iu":
            action = action.item()
        if not isinstance(action, (int, np.integer)) or isinstance(action, (bool, np.bool_)):
            raise ValueError(
                f"Action {action!r} is not an integer: pass an int of the action space {self.action_space}."
            )
        index = int(action) - self.action_start
        if not 0 <= index < self.n_actions:
            raise ValueError(
                f"Action {action!r} is outside the action space {self.action_space} (valid: "
                f"{self.action_start}..{self.action_start + self.n_actions - 1}): pass actions of that space."
            )
        return index

    # ------------------------------------------------------------------ updates

    def update(
        self,
        obs: Any,
        action: Any,
        reward: Any,
        next_obs: Any,
        terminated: Any,
        truncated: Any,
        *,
        stream: int = 0,
    ) -> None:
        """Count one transition, as returned by ``env.step`` after taking ``action`` in ``obs``.

        A terminated transition goes to the absorbing terminal node (``next_obs`` is checked but not
        indexed). A truncated one is an ordinary transition that ends the episode. The first ``obs`` of
        each episode is counted as an initial state. Everything is validated before anything changes.

        :param stream: which stream of episodes the transition belongs to, when several envs feed the
            same statistics (each keeps its own open episode); 0 for a plain loop

        :raises ValueError: an observation or action outside its space, a reward that is not a finite
            real number, or a flag that is not a bool
        """
        row = self._check_row(obs, action, reward, next_obs, terminated, truncated)
        self._apply(*row, stream=stream)
        self.version += 1

    def _check_row(
        self, obs: Any, action: Any, reward: Any, next_obs: Any, terminated: Any, truncated: Any
    ) -> tuple[Key, int, float, Key, bool, bool]:
        return (
            self.indexer.key(obs),
            self.action_index(action),
            _check_reward(reward),
            self.indexer.key(next_obs),
            _check_flag(terminated, "terminated"),
            _check_flag(truncated, "truncated"),
        )

    def _apply(
        self, key: Key, a: int, reward: float, next_key: Key, terminated: bool, truncated: bool, stream: int = 0
    ) -> None:
        s = self.indexer.index_key(key)
        if not terminated:
            s_next = self.indexer.index_key(next_key)
        self._grow()
        step = self._open_steps.get(stream, 0)
        if step == 0:
            self._initial[s] += 1
        self._counts[s, a] += 1
        self._reward_sum[s, a] += reward
        self._reward_sq[s, a] += reward * reward
        if terminated:
            self._terminal[s, a] += 1
        else:
            succ = self._succ.setdefault(s * self.n_actions + a, {})
            succ[s_next] = succ.get(s_next, 0) + 1
        step += 1
        if terminated or truncated:
            self._open_steps.pop(stream, None)
            self._end_episode(step, truncated)
        else:
            self._open_steps[stream] = step

    def _end_episode(self, length: int, truncated: bool) -> None:
        # A time limit that coincides with termination still reveals the horizon, so it counts as truncated.
        self.episode_lengths.append(length)
        self.episode_truncated.append(truncated)
        if truncated:
            self.max_truncated_length = max(self.max_truncated_length, length)

    def _grow(self) -> None:
        capacity = self._counts.shape[0]
        if len(self.indexer) <= capacity:
            return
        new = max(2 * capacity, len(self.indexer))
        for name in ("_counts", "_reward_sum", "_reward_sq", "_terminal", "_initial"):
            old = getattr(self, name)
            grown = np.zeros((new,) + old.shape[1:], old.dtype)
            grown[:capacity] = old
            setattr(self, name, grown)

    def reset_episode(self, stream: int = 0) -> None:
        """Abandon the unfinished episode of ``stream``: its transitions stay counted, it is not recorded
        as finished, and the next transition starts a new episode (its ``obs`` counts as initial)."""
        if self._open_steps.pop(stream, 0):
            self.version += 1

    def fold(self, dataset: Mapping[str, Any]) -> int:
        """Add an offline dataset, atomically: every row is validated before any is added.

        Row 0 starts an episode (an unfinished current episode is abandoned, as by :meth:`reset_episode`),
        and so does every row after one with ``terminations | truncations``. Adding the rows equals
        calling :meth:`update` on each in order.

        :param dataset: a dict of equal-length columns ``observations``, ``actions``, ``rewards``,
            ``next_observations``, ``terminations`` and optionally ``truncations``; Dict/Tuple
            observations as one row per entry or as a dict/tuple of per-component columns
        :return: the number of transitions added
        :raises ValueError: a missing key, mismatched lengths, or a bad row (naming its index); nothing is added
        """
        rows = self._check_dataset(dataset)
        if rows:
            self.reset_episode()
        for row in rows:
            self._apply(*row)
        self.version += len(rows)
        return len(rows)

    def _check_dataset(self, dataset: Mapping[str, Any]) -> list[tuple[Key, int, float, Key, bool, bool]]:
        if not isinstance(dataset, Mapping):
            raise ValueError(
                f"dataset must be a dict of arrays with keys {list(_REQUIRED)}, got {type(dataset).__name__}"
            )
        missing = [k for k in _REQUIRED if k not in dataset]
        if missing:
            raise ValueError(
                f"dataset is missing the key(s) {missing}: it needs {list(_REQUIRED)} (+ optional 'truncations')"
            )
        names = list(_REQUIRED) + (["truncations"] if "truncations" in dataset else [])
        obs_space = {"observations", "next_observations"}
        lengths = {
            k: _column_length(dataset[k], self.observation_space if k in obs_space else None, k)
            for k in names
        }
        n = lengths["observations"]
        if any(length != n for length in lengths.values()):
            raise ValueError(
                f"dataset columns have mismatched lengths {lengths}: every column needs one entry per row"
            )
        truncations = dataset["truncations"] if "truncations" in dataset else [False] * n
        rows = []
        for i in range(n):
            try:
                rows.append(
                    self._check_row(
                        _column_row(dataset["observations"], self.observation_space, i),
                        dataset["actions"][i],
                        dataset["rewards"][i],
                        _column_row(dataset["next_observations"], self.observation_space, i),
                        dataset["terminations"][i],
                        truncations[i],
                    )
                )
            except ValueError as err:
                raise ValueError(f"dataset row {i} is invalid, nothing was added: {err}") from None
        return rows

    # ------------------------------------------------------------------ exports

    def _reward_moments(self) -> tuple[np.ndarray, np.ndarray]:
        S = self.n_states
        n = self._counts[:S]
        mean = _safe_divide(self._reward_sum[:S], n)
        var = np.maximum(_safe_divide(self._reward_sq[:S], n) - mean * mean, 0.0)
        var[n < 2] = 0.0
        return mean, var

    def _edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        total = sum(len(d) for d in self._succ.values())
        src = np.empty(total, np.int64)
        dst = np.empty(total, np.int64)
        count = np.empty(total, np.int64)
        i = 0
        for s_a, succ in self._succ.items():
            j = i + len(succ)
            src[i:j] = s_a
            dst[i:j] = list(succ.keys())
            count[i:j] = list(succ.values())
            i = j
        order = np.lexsort((dst, src))
        return src[order], dst[order], count[order]

    def sparse(self) -> SparseStats:
        """Sparse export (read-only arrays, cached until the next change).

        Rows (and ``dst``) are *state ids*, in the order states were first met, not observations: row ``i``
        is the observation ``stats.observation(i)``, and observation ``obs`` is row ``stats.state_id(obs)``.
        """
        cached = self._cache.get("sparse")
        if cached is not None and cached[0] == self.version:
            return cached[1]
        S = self.n_states
        mean, var = self._reward_moments()
        out = SparseStats(
            self._counts[:S].copy(),
            mean,
            var,
            self._terminal[:S].copy(),
            self._initial[:S].copy(),
            *self._edges(),
        )
        _readonly(*vars(out).values())
        self._cache["sparse"] = (self.version, out)
        return out

    def dense(self, by_observation: bool = False) -> DenseStats:
        """Dense export (read-only arrays, cached until the next change).

        By default rows (and the last axis of ``transitions``) are *state ids*, in the order states were
        first met, not observations: row ``i`` is the observation ``stats.observation(i)``, and observation
        ``obs`` is row ``stats.state_id(obs)`` (None if never met). For a ``Discrete(n, start)`` observation
        space, ``by_observation=True`` gives ``n`` rows indexed by ``obs - start`` instead, zeros for the
        observations never met (so ``dense(by_observation=True).counts[obs - start]`` is always valid).

        :param by_observation: index rows by observation (Discrete observation spaces only)
        :raises TypeError: ``by_observation=True`` for an observation space that is not Discrete
        """
        if by_observation:
            return self._dense_by_observation()
        cached = self._cache.get("dense")
        if cached is not None and cached[0] == self.version:
            return cached[1]
        sp = self.sparse()
        S, A = sp.n_states, sp.n_actions
        transitions = np.zeros(S * A * S, np.int64)
        transitions[sp.src * S + sp.dst] = sp.count
        out = DenseStats(
            sp.counts,
            sp.reward_mean,
            sp.reward_var,
            transitions.reshape(S, A, S),
            sp.terminal_counts,
            sp.initial_counts,
        )
        _readonly(out.transitions)
        self._cache["dense"] = (self.version, out)
        return out

    def _dense_by_observation(self) -> DenseStats:
        space = self.observation_space
        if not isinstance(space, spaces.Discrete):
            raise TypeError(
                f"dense(by_observation=True) needs a Discrete observation space, not {space}: use dense() and "
                "map its rows with stats.observation(i) / stats.state_id(obs)"
            )
        cached = self._cache.get("dense_obs")
        if cached is not None and cached[0] == self.version:
            return cached[1]
        d = self.dense()
        n, A = int(space.n), self.n_actions
        rows = self.indexer.keys_array()[:, 0] - int(space.start)  # row of each state id
        counts = np.zeros((n, A), np.int64)
        reward_mean = np.zeros((n, A))
        reward_var = np.zeros((n, A))
        terminal = np.zeros((n, A), np.int64)
        initial = np.zeros(n, np.int64)
        transitions = np.zeros((n, A, n), np.int64)
        counts[rows], reward_mean[rows], reward_var[rows] = d.counts, d.reward_mean, d.reward_var
        terminal[rows], initial[rows] = d.terminal_counts, d.initial_counts
        transitions[np.ix_(rows, np.arange(A), rows)] = d.transitions
        out = DenseStats(counts, reward_mean, reward_var, transitions, terminal, initial)
        _readonly(*vars(out).values())
        self._cache["dense_obs"] = (self.version, out)
        return out

    # ------------------------------------------------------------------ persistence

    def _signature(self) -> dict[str, Any]:
        return {
            "observation_space": space_signature(self.observation_space),
            "action_space": space_signature(self.action_space),
        }

    def state_dict(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Everything needed to restore these statistics exactly.

        :return: ``(arrays, meta)``: NumPy arrays and a JSON-able dict
        """
        S = self.n_states
        sp = self.sparse()
        arrays = {
            "keys": self.indexer.keys_array(),
            "counts": self._counts[:S].copy(),
            "reward_sum": self._reward_sum[:S].copy(),
            "reward_sq": self._reward_sq[:S].copy(),
            "terminal_counts": self._terminal[:S].copy(),
            "initial_counts": self._initial[:S].copy(),
            "edge_src": sp.src.copy(),
            "edge_dst": sp.dst.copy(),
            "edge_count": sp.count.copy(),
            "episode_lengths": np.array(self.episode_lengths, np.int64),
            "episode_truncated": np.array(self.episode_truncated, np.bool_),
        }
        meta = {
            "format": _FORMAT,
            **self._signature(),
            "open_episode_steps": {str(k): v for k, v in self._open_steps.items()},
            "max_truncated_length": self.max_truncated_length,
            "version": self.version,
        }
        return arrays, meta

    def load_state_dict(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output exactly (``version`` included).

        :raises ValueError: other spaces, a missing or inconsistent array (nothing changes)
        """
        fresh = SufficientStats(self.observation_space, self.action_space)
        fresh._restore(arrays, meta)
        self.__dict__.update(fresh.__dict__)

    def _restore(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        if meta.get("format") != _FORMAT:
            raise ValueError(
                f"not SufficientStats data (format {meta.get('format')!r}, expected {_FORMAT!r})"
            )
        saved = {k: meta.get(k) for k in ("observation_space", "action_space")}
        if saved != self._signature():
            raise ValueError(
                f"saved statistics are for spaces {saved}, not {self._signature()}: load them with the "
                "observation and action spaces they were collected in"
            )
        a = _checked_arrays(arrays, self.indexer.dim, self.n_actions)
        self.indexer.load_keys(a["keys"])
        S = len(self.indexer)
        self._reset_counts(capacity=max(S, 16))
        for name, attr in (
            ("counts", "_counts"),
            ("reward_sum", "_reward_sum"),
            ("reward_sq", "_reward_sq"),
            ("terminal_counts", "_terminal"),
            ("initial_counts", "_initial"),
        ):
            getattr(self, attr)[:S] = a[name]
        for s_a, s_next, c in zip(
            a["edge_src"].tolist(), a["edge_dst"].tolist(), a["edge_count"].tolist(), strict=True
        ):
            self._succ.setdefault(s_a, {})[s_next] = c
        self.episode_lengths = a["episode_lengths"].tolist()
        self.episode_truncated = a["episode_truncated"].tolist()
        self._open_steps = _open_steps(meta)
        self.max_truncated_length = _meta_int(meta, "max_truncated_length")
        self.version = _meta_int(meta, "version")

    def save(self, path: str | os.PathLike) -> None:
        """Write the statistics to an ``.npz`` file at exactly ``path`` (no suffix is added)."""
        arrays, meta = self.state_dict()
        with open(path, "wb") as f:
            # numpy's stub types **kwds as its allow_pickle flag
            np.savez(f, **arrays, **{_META_KEY: np.array([json.dumps(meta)])})  # type: ignore[arg-type]

    @classmethod
    def load(
        cls, path: str | os.PathLike, observation_space: spaces.Space, action_space: spaces.Space
    ) -> SufficientStats:
        """Read statistics written by :meth:`save` (nothing is unpickled).

        :param path: the file written by :meth:`save`
        :param observation_space: the observation space the statistics were collected in
        :param action_space: the action space the statistics were collected in
        :raises ValueError: not a statistics file, corrupt, or saved with other spaces
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(
                f"{os.fspath(path)!r} is not a SufficientStats .npz file written by save(): {err}"
            ) from None
        meta_arr = arrays.pop(_META_KEY, None)
        try:
            meta = json.loads(str(meta_arr[0]))
        except (TypeError, IndexError, ValueError):
            raise ValueError(
                f"{os.fspath(path)!r} has no valid metadata: it was not written by SufficientStats.save()"
            ) from None
        stats = cls(observation_space, action_space)
        stats.load_state_dict(arrays, meta)
        return stats


def _open_steps(meta: Mapping[str, Any]) -> dict[int, int]:
    raw = meta.get("open_episode_steps")
    if not isinstance(raw, dict) or not all(isinstance(v, int) and v > 0 for v in raw.values()):
        raise ValueError(f"saved statistics have a bad 'open_episode_steps' entry {raw!r}: the file is corrupt")
    return {int(k): v for k, v in raw.items()}


def _meta_int(meta: Mapping[str, Any], name: str) -> int:
    value = meta.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"saved statistics have an invalid {name!r}: {value!r}")
    return value


_ARRAY_SPECS = {  # name -> (dtype kind, shape as a function of (S, D, A, E, n_episodes))
    "keys": ("iu", lambda S, D, A, E, K: (S, D)),
    "counts": ("iu", lambda S, D, A, E, K: (S, A)),
    "reward_sum": ("f", lambda S, D, A, E, K: (S, A)),
    "reward_sq": ("f", lambda S, D, A, E, K: (S, A)),
    "terminal_counts": ("iu", lambda S, D, A, E, K: (S, A)),
    "initial_counts": ("iu", lambda S, D, A, E, K: (S,)),
    "edge_src": ("iu", lambda S, D, A, E, K: (E,)),
    "edge_dst": ("iu", lambda S, D, A, E, K: (E,)),
    "edge_count": ("iu", lambda S, D, A, E, K: (E,)),
    "episode_lengths": ("iu", lambda S, D, A, E, K: (K,)),
    "episode_truncated": ("b", lambda S, D, A, E, K: (K,)),
}


def _checked_arrays(arrays: Mapping[str, np.ndarray], D: int, A: int) -> dict[str, np.ndarray]:
    """The saved arrays, with shapes, dtypes and counts checked against each other."""
    missing = [k for k in _ARRAY_SPECS if k not in arrays]
    if missing:
        raise ValueError(f"saved statistics are missing the array(s) {missing}: the file is corrupt")
    a = {k: np.asarray(arrays[k]) for k in _ARRAY_SPECS}
    dims = (len(a["keys"]), D, A, len(a["edge_src"]), len(a["episode_lengths"]))
    for name, (kinds, shape) in _ARRAY_SPECS.items():
        if a[name].shape != shape(*dims) or (a[name].size and a[name].dtype.kind not in kinds):
            raise ValueError(
                f"saved array {name!r} has {a[name].dtype} {a[name].shape}, expected {shape(*dims)}"
            )
    S = dims[0]
    src, dst, count = a["edge_src"], a["edge_dst"], a["edge_count"]
    in_range = np.all((src >= 0) & (src < S * A) & (dst >= 0) & (dst < S) & (count > 0))
    corrupt = ValueError("saved transition counts do not add up to the visit counts: the file is corrupt")
    if not in_range:
        raise corrupt
    per_src = np.bincount(src, weights=count, minlength=S * A)
    if not np.array_equal(per_src.reshape(S, A) + a["terminal_counts"], a["counts"]):
        raise corrupt
    if len(np.unique(src * max(S, 1) + dst)) != len(src):
        raise ValueError("saved transition edges contain duplicates: the file is corrupt")
    return a
