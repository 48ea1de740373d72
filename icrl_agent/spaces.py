"""Observations of any finite Gymnasium space -> dense state ids.

:class:`ObservationIndexer` turns an observation into a canonical flat tuple of Python ints (its *key*)
and gives each new key the next state id, in the order states are met. Supported spaces: ``Discrete``
(any ``start``), ``MultiDiscrete`` (any shape and ``start``), ``MultiBinary`` and ``Tuple``/``Dict`` of
them, nested. ``Dict`` components are read in the order of ``space.spaces`` (sorted keys, as Gymnasium
builds it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

Key = tuple[int, ...]

_SUPPORTED = "Discrete, MultiDiscrete, MultiBinary, or a Tuple/Dict of those"


class _NotInSpace(Exception):
    """Internal: why an observation (or one of its components) is outside its space."""


def _unsupported(space: Any, root: Any) -> TypeError:
    where = "" if space is root else f" (inside {root})"
    return TypeError(
        f"Observation space {space}{where} is not supported: icrl_agent needs a finite space ({_SUPPORTED}). "
        "Discretize it first with an observation wrapper, e.g. bin each Box dimension into a "
        "MultiDiscrete (gymnasium.wrappers.TransformObservation with a new observation_space), or use a "
        "tabular wrapper that maps each observation to a Discrete state."
    )


def _scalar_int(x: Any) -> int:
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, np.ndarray) and x.ndim == 0 and x.dtype.kind in "iu":
        return int(x)
    raise _NotInSpace(f"Discrete needs an integer scalar, got {type(x).__name__}")


def _leaf_bounds(space: spaces.Space) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive per-component bounds of a leaf space, or None if ``space`` is not a supported leaf."""
    if isinstance(space, spaces.Discrete):
        start = int(space.start)
        return np.array([start], np.int64), np.array([start + int(space.n) - 1], np.int64)
    if isinstance(space, spaces.MultiDiscrete):
        low = np.asarray(getattr(space, "start", np.zeros_like(space.nvec)), np.int64).ravel()
        return low, low + np.asarray(space.nvec, np.int64).ravel() - 1
    if isinstance(space, spaces.MultiBinary):
        size = int(np.prod(space.shape))
        return np.zeros(size, np.int64), np.ones(size, np.int64)
    return None


class _Codec:
    """Flattens one (sub)space's observations to ints and rebuilds them; a tree for Tuple/Dict."""

    def __init__(self, space: spaces.Space, root: spaces.Space):
        self.space = space
        bounds = _leaf_bounds(space)
        if bounds is not None:
            self.children: list[tuple[Any, _Codec]] = []
            self.lo, self.hi = bounds
        elif isinstance(space, spaces.Tuple):
            self.children = [(i, _Codec(sub, root)) for i, sub in enumerate(space.spaces)]
        elif isinstance(space, spaces.Dict):
            self.children = [(k, _Codec(sub, root)) for k, sub in space.spaces.items()]
        else:
            raise _unsupported(space, root)
        if self.children:
            self.lo = np.concatenate([np.zeros(0, np.int64)] + [c.lo for _, c in self.children])
            self.hi = np.concatenate([np.zeros(0, np.int64)] + [c.hi for _, c in self.children])
        self.dim = int(self.lo.size)
        self.lo_list, self.hi_list = self.lo.tolist(), self.hi.tolist()
        self.flatten: Callable[[Any, list[int]], None] = self._pick_flatten()

    def _pick_flatten(self) -> Callable[[Any, list[int]], None]:
        if isinstance(self.space, spaces.Discrete):
            return self._flatten_discrete
        if isinstance(self.space, (spaces.MultiDiscrete, spaces.MultiBinary)):
            return self._flatten_array
        if isinstance(self.space, spaces.Tuple):
            return self._flatten_tuple
        return self._flatten_dict

    def _flatten_discrete(self, x: Any, out: list[int]) -> None:
        v = _scalar_int(x)
        if not self.lo_list[0] <= v <= self.hi_list[0]:
            raise _NotInSpace(f"{v} is outside {self.space} (valid: {self.lo[0]}..{self.hi[0]})")
        out.append(v)

    def _flatten_array(self, x: Any, out: list[int]) -> None:
        arr = x if isinstance(x, np.ndarray) else np.asarray(x)
        if arr.dtype.kind not in "iub":
            raise _NotInSpace(f"{self.space} needs integer values, got dtype {arr.dtype}")
        if arr.shape != self.space.shape:
            raise _NotInSpace(f"{self.space} needs shape {self.space.shape}, got shape {arr.shape}")
        # Python comparisons beat NumPy ufuncs on the handful of components a tabular observation has.
        values = [int(v) for v in arr.ravel().tolist()]
        for i, (v, lo, hi) in enumerate(zip(values, self.lo_list, self.hi_list, strict=True)):
            if not lo <= v <= hi:
                raise _NotInSpace(f"flat component {i} is {v}, outside {self.space} (valid: {lo}..{hi})")
        out.extend(values)

    def _flatten_tuple(self, x: Any, out: list[int]) -> None:
        if isinstance(x, (str, bytes, Mapping)) or not isinstance(x, (Sequence, np.ndarray)):
            raise _NotInSpace(
                f"Tuple needs a tuple of {len(self.children)} components, got {type(x).__name__}"
            )
        if len(x) != len(self.children):
            raise _NotInSpace(f"Tuple needs {len(self.children)} components, got {len(x)}")
        for (_, codec), part in zip(self.children, x, strict=True):
            codec.flatten(part, out)

    def _flatten_dict(self, x: Any, out: list[int]) -> None:
        if not isinstance(x, Mapping):
            raise _NotInSpace(f"Dict needs a mapping, got {type(x).__name__}")
        if set(x.keys()) != {k for k, _ in self.children}:
            raise _NotInSpace(
                f"Dict needs keys {sorted(str(k) for k, _ in self.children)}, got {sorted(map(str, x))}"
            )
        for k, codec in self.children:
            codec.flatten(x[k], out)

    def rebuild(self, values: Iterator[int]) -> Any:
        """The observation in the space's own format, consuming ``self.dim`` ints from ``values``."""
        if isinstance(self.space, spaces.Discrete):
            return next(values)
        if isinstance(self.space, (spaces.MultiDiscrete, spaces.MultiBinary)):
            flat = [next(values) for _ in range(self.dim)]
            return np.array(flat, dtype=self.space.dtype).reshape(self.space.shape)
        if isinstance(self.space, spaces.Tuple):
            return tuple(codec.rebuild(values) for _, codec in self.children)
        return {k: codec.rebuild(values) for k, codec in self.children}


class ObservationIndexer:
    """Maps observations of a finite Gymnasium space to state ids ``0..S-1``, assigned as states are met.

    :param space: the observation space: Discrete (any ``start``), MultiDiscrete, MultiBinary, or a
        Tuple/Dict of those, nested
    :raises TypeError: if the space (or a component) is not finite, e.g. Box, Text, Graph, Sequence
    """

    def __init__(self, space: spaces.Space):
        self.space = space
        self._codec = _Codec(space, space)
        self._discrete = isinstance(space, spaces.Discrete)
        self._ids: dict[Key, int] = {}
        self._keys: list[Key] = []

    @property
    def dim(self) -> int:
        """Length ``D`` of every key of this space."""
        return self._codec.dim

    def key(self, obs: Any) -> Key:
        """Canonical flat key of an observation.

        :param obs: an observation of the space (Python/NumPy ints, arrays, tuples, dicts)
        :return: a tuple of ``D`` Python ints
        :raises ValueError: if ``obs`` is not in the space
        """
        if self._discrete and type(obs) is int and self._codec.lo_list[0] <= obs <= self._codec.hi_list[0]:
            return (obs,)
        out: list[int] = []
        try:
            self._codec.flatten(obs, out)
        except _NotInSpace as err:
            raise ValueError(
                f"Observation {obs!r} is not in the observation space {self.space}: {err}. Pass observations "
                "exactly as the env returns them, or fix the env/wrapper so they lie in its observation_space."
            ) from None
        return tuple(out)

    def index(self, obs: Any) -> int:
        """State id of ``obs``, assigning the next id on first sight.

        :raises ValueError: if ``obs`` is not in the space
        """
        return self.index_key(self.key(obs))

    def index_key(self, key: Key) -> int:
        """State id of a key returned by :meth:`key`, assigning the next id on first sight."""
        state_id = self._ids.get(key)
        if state_id is None:
            state_id = self._ids[key] = len(self._keys)
            self._keys.append(key)
        return state_id

    def lookup(self, obs: Any) -> int | None:
        """State id of ``obs``, or None if it was never met (never assigns).

        :raises ValueError: if ``obs`` is not in the space
        """
        return self._ids.get(self.key(obs))

    def lookup_key(self, key: Key) -> int | None:
        """State id of a key returned by :meth:`key`, or None (never assigns)."""
        return self._ids.get(key)

    def observation(self, state_id: int) -> Any:
        """The observation of a state id, in the space's own format.

        :return: an int for Discrete, a NumPy array of the space's dtype for MultiDiscrete/MultiBinary,
            a tuple / dict for Tuple / Dict
        :raises IndexError: if ``state_id`` is not a known state
        """
        if not 0 <= state_id < len(self._keys):
            raise IndexError(f"state id {state_id} is unknown: {len(self._keys)} states are known")
        return self._codec.rebuild(iter(self._keys[state_id]))

    def keys_array(self) -> np.ndarray:
        """All keys in state-id order, int64 ``[S, D]`` (row ``i`` is the key of state ``i``)."""
        return np.array(self._keys, dtype=np.int64).reshape(len(self._keys), self.dim)

    def load_keys(self, keys: np.ndarray) -> None:
        """Replace the known states by ``keys`` (as returned by :meth:`keys_array`); row ``i`` gets id ``i``.

        :raises ValueError: wrong shape or dtype, a key outside the space, or duplicate keys (nothing changes)
        """
        arr = np.asarray(keys)
        if arr.ndim != 2 or arr.shape[1] != self.dim or (arr.size and arr.dtype.kind not in "iu"):
            raise ValueError(
                f"keys must be an integer array of shape [S, {self.dim}] for {self.space}, got "
                f"{arr.dtype} {arr.shape}: pass the output of keys_array() of an indexer of the same space"
            )
        arr = arr.astype(np.int64)
        bad = (arr < self._codec.lo) | (arr > self._codec.hi)
        if bad.any():
            row = int(np.argmax(bad.any(axis=1)))
            raise ValueError(
                f"key row {row} ({arr[row].tolist()}) is not in {self.space}: the keys are corrupt"
            )
        new_keys = [tuple(row) for row in arr.tolist()]
        new_ids = {k: i for i, k in enumerate(new_keys)}
        if len(new_ids) != len(new_keys):
            raise ValueError(f"keys contain duplicate rows for {self.space}: the keys are corrupt")
        self._keys, self._ids = new_keys, new_ids

    def __len__(self) -> int:
        return len(self._keys)


def space_signature(space: spaces.Space) -> dict[str, Any]:
    """A JSON-able description of a finite space's values (dtypes ignored), to check saved data matches.

    :raises TypeError: if the space is not supported by :class:`ObservationIndexer`
    """
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        start = getattr(space, "start", np.zeros_like(space.nvec))
        return {
            "type": "MultiDiscrete",
            "nvec": np.asarray(space.nvec).tolist(),
            "start": np.asarray(start).tolist(),
        }
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "shape": list(space.shape)}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_signature(s) for s in space.spaces]}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": [[str(k), space_signature(s)] for k, s in space.spaces.items()]}
    raise _unsupported(space, space)


def space_from_signature(signature: dict[str, Any]) -> spaces.Space:
    """The space a :func:`space_signature` describes (default dtypes), e.g. to reload saved data alone.

    :raises ValueError: if ``signature`` is not one :func:`space_signature` writes
    """
    kind = signature.get("type") if isinstance(signature, dict) else None
    try:
        if kind == "Discrete":
            return spaces.Discrete(signature["n"], start=signature["start"])
        if kind == "MultiDiscrete":
            return spaces.MultiDiscrete(signature["nvec"], start=signature["start"])
        if kind == "MultiBinary":
            return spaces.MultiBinary(signature["shape"])
        if kind == "Tuple":
            return spaces.Tuple([space_from_signature(s) for s in signature["spaces"]])
        if kind == "Dict":
            return spaces.Dict({k: space_from_signature(s) for k, s in signature["spaces"]})
    except (KeyError, TypeError) as err:
        raise ValueError(f"bad space signature {signature!r}: {err}") from err
    raise ValueError(f"bad space signature {signature!r}: unknown space type {kind!r}")


def discrete_action_space(space: spaces.Space) -> tuple[int, int]:
    """Size and start of a Discrete action space.

    :param space: the action space
    :return: ``(n, start)``: Gymnasium action ``start + i`` is action index ``i``
    :raises TypeError: if ``space`` is not ``gymnasium.spaces.Discrete``
    """
    if not isinstance(space, spaces.Discrete):
        raise TypeError(
            f"Action space {space} is not supported: icrl_agent needs a gymnasium.spaces.Discrete action space. "
            "Wrap the env with an action wrapper that exposes a Discrete space, e.g. a fixed set of Box "
            "actions, or the flattened combinations of a MultiDiscrete, indexed 0..n-1."
        )
    return int(space.n), int(space.start)
