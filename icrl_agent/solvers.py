"""Exact solvers for tabular MDPs, batched over any leading dimensions, device-agnostic (torch).

Every function takes a model ``(P[..., S, A, S'], R[..., S, A], terminal[..., S])``:

- ``P`` is row-stochastic over successors ``S'`` (= ``S``),
- ``R[s, a]`` is the expected reward of taking ``a`` in ``s``,
- ``terminal[s]`` marks states whose value is 0: entering them ends the episode.

Finite-horizon Q tensors are indexed by *elapsed* step: ``Q[..., t, s, a]``, ``t = 0`` the first step
of an episode, ``V_H = 0``. Numpy inputs are converted to float64 tensors. Nothing here knows about
statistics or environments: helpers at the bottom take any object with ``transition_matrix()``,
``initial_distribution()`` and ``horizon`` (the registered envs, via ``env.unwrapped``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


class TabularModel(Protocol):
    """What the value helpers need of an environment: its exact model and start distribution."""

    horizon: int

    def transition_matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def initial_distribution(self) -> np.ndarray: ...


def _as_tensor(x: ArrayLike, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if dtype is None else x.to(dtype)
    array = np.asarray(x)
    if dtype is None and array.dtype.kind == "f":
        dtype = torch.float64
    return torch.as_tensor(array, dtype=dtype)


def _prepare(
    P: ArrayLike, R: ArrayLike, terminal: ArrayLike | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensors on one device and dtype, with the continuation mask ``1 - terminal`` over successors."""
    P = _as_tensor(P)
    R = _as_tensor(R, P.dtype).to(P.device)
    if P.shape[-1] != P.shape[-3] or R.shape != P.shape[:-1]:
        raise ValueError(
            f"model shapes do not match: P {tuple(P.shape)} must be [..., S, A, S] and R {tuple(R.shape)} "
            "must be [..., S, A]"
        )
    if terminal is None:
        alive = torch.ones(P.shape[:-3] + P.shape[-1:], dtype=P.dtype, device=P.device)
    else:
        alive = 1.0 - _as_tensor(terminal).to(device=P.device, dtype=P.dtype)
    return P, R, alive


def _backup(P: torch.Tensor, R: torch.Tensor, alive: torch.Tensor, v_next: torch.Tensor) -> torch.Tensor:
    """One Bellman backup ``R + P (alive * V)``, returning Q[..., S, A]."""
    return R + torch.einsum("...sat,...t->...sa", P, alive * v_next)


def finite_horizon_q(
    P: ArrayLike, R: ArrayLike, horizon: int, terminal: ArrayLike | None = None
) -> torch.Tensor:
    """Optimal finite-horizon Q-values by backward induction.

    :param P: transition probabilities ``[..., S, A, S]``
    :param R: expected rewards ``[..., S, A]``
    :param horizon: number of steps ``H`` in an episode (>= 1)
    :param terminal: optional bool ``[..., S]``: states whose value is 0
    :return: ``Q[..., H, S, A]``; ``Q[..., t]`` is the value of acting at elapsed step ``t``
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    P, R, alive = _prepare(P, R, terminal)
    q = torch.empty(R.shape[:-2] + (horizon,) + R.shape[-2:], dtype=P.dtype, device=P.device)
    v_next = torch.zeros_like(alive)
    for t in range(horizon - 1, -1, -1):
        q[..., t, :, :] = _backup(P, R, alive, v_next)
        v_next = q[..., t, :, :].amax(dim=-1)
    return q


def discounted_q(
    P: ArrayLike,
    R: ArrayLike,
    gamma: float,
    terminal: ArrayLike | None = None,
    tol: float = 1e-10,
    max_iter: int = 100_000,
) -> torch.Tensor:
    """Optimal discounted Q-values by value iteration until the sup-norm change is below ``tol``.

    :param P: transition probabilities ``[..., S, A, S]``
    :param R: expected rewards ``[..., S, A]``
    :param gamma: discount factor in ``[0, 1)``
    :param terminal: optional bool ``[..., S]``
    :param tol: stopping tolerance on the change of Q
    :param max_iter: iteration cap
    :return: ``Q[..., S, A]``
    """
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    P, R, alive = _prepare(P, R, terminal)
    q = R.clone()
    for _ in range(max_iter):
        q_new = _backup(P, R, gamma * alive, q.amax(dim=-1))
        done = (q_new - q).abs().max().item() < tol
        q = q_new
        if done:
            break
    return q


def evaluate_policy(
    P: ArrayLike,
    R: ArrayLike,
    policy: ArrayLike,
    horizon: int | None = None,
    gamma: float | None = None,
    terminal: ArrayLike | None = None,
) -> torch.Tensor:
    """Exact value of a policy at the start of an episode.

    Give ``horizon`` for finite-horizon evaluation (the policy may then be per step, ``[..., H, S, A]``)
    or ``gamma`` for discounted evaluation (a stationary policy, solved as a linear system).

    :param P: transition probabilities ``[..., S, A, S]``
    :param R: expected rewards ``[..., S, A]``
    :param policy: action probabilities ``[..., S, A]`` or ``[..., H, S, A]``
    :param horizon: episode length for finite-horizon evaluation
    :param gamma: discount factor for discounted evaluation
    :param terminal: optional bool ``[..., S]``
    :return: ``V[..., S]``
    """
    if (horizon is None) == (gamma is None):
        raise ValueError("give exactly one of horizon= (finite horizon) or gamma= (discounted)")
    P, R, alive = _prepare(P, R, terminal)
    pi = _as_tensor(policy, P.dtype).to(P.device)
    if gamma is not None:
        return _evaluate_discounted(P, R, pi, gamma, alive)
    per_step = pi.dim() == R.dim() + 1
    v = torch.zeros_like(alive)
    for t in range(horizon - 1, -1, -1):
        pi_t = pi[..., t, :, :] if per_step else pi
        v = (pi_t * _backup(P, R, alive, v)).sum(dim=-1)
    return v


def _evaluate_discounted(
    P: torch.Tensor, R: torch.Tensor, pi: torch.Tensor, gamma: float, alive: torch.Tensor
) -> torch.Tensor:
    p_pi = torch.einsum("...sa,...sat->...st", pi, P) * (gamma * alive).unsqueeze(-2)
    r_pi = (pi * R).sum(dim=-1)
    eye = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    return torch.linalg.solve(eye - p_pi, r_pi.unsqueeze(-1)).squeeze(-1)


def greedy_policy(q: torch.Tensor) -> torch.Tensor:
    """One-hot policy of the first maximizing action of ``q[..., A]``."""
    return torch.nn.functional.one_hot(q.argmax(dim=-1), q.shape[-1]).to(q.dtype)


def _model_arrays(model: TabularModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    P, R, terminal = model.transition_matrix()
    init = _as_tensor(np.asarray(model.initial_distribution(), dtype=np.float64))
    return _as_tensor(P), _as_tensor(R), _as_tensor(terminal), init


def policy_value(
    model: TabularModel, policy: ArrayLike, horizon: int | None = None, gamma: float | None = None
) -> float:
    """Expected return of ``policy`` from the model's initial distribution.

    :param model: an env (``env.unwrapped``) or any object with ``transition_matrix()``,
        ``initial_distribution()`` and ``horizon``
    :param policy: ``[S, A]`` stationary or ``[H, S, A]`` per elapsed step
    :param horizon: episode length; defaults to ``model.horizon`` when ``gamma`` is not given
    :param gamma: discount factor, for discounted evaluation instead
    :return: the expected return
    """
    P, R, terminal, init = _model_arrays(model)
    if gamma is None and horizon is None:
        horizon = model.horizon
    v = evaluate_policy(P, R, policy, horizon=horizon, gamma=gamma, terminal=terminal)
    return float(init @ v)


def optimal_value(model: TabularModel, horizon: int | None = None, gamma: float | None = None) -> float:
    """Optimal expected return from the model's initial distribution (finite horizon unless ``gamma``).

    :param model: an env (``env.unwrapped``) or any object with the tabular-model methods
    :param horizon: episode length; defaults to ``model.horizon``
    :param gamma: discount factor, for the discounted optimum instead
    :return: the optimal expected return
    """
    P, R, terminal, init = _model_arrays(model)
    if gamma is not None:
        v = discounted_q(P, R, gamma, terminal).amax(dim=-1)
    else:
        v = finite_horizon_q(P, R, horizon or model.horizon, terminal)[0].amax(dim=-1)
    return float(init @ v)


def random_value(model: TabularModel, horizon: int | None = None, gamma: float | None = None) -> float:
    """Expected return of the uniformly random policy from the model's initial distribution.

    :param model: an env (``env.unwrapped``) or any object with the tabular-model methods
    :param horizon: episode length; defaults to ``model.horizon``
    :param gamma: discount factor, for discounted evaluation instead
    :return: the random policy's expected return
    """
    P, _, _ = model.transition_matrix()
    n_states, n_actions = P.shape[0], P.shape[1]
    uniform = np.full((n_states, n_actions), 1.0 / n_actions)
    return policy_value(model, uniform, horizon=horizon, gamma=gamma)
