"""The exact solvers agree with plain numpy backward induction and with each other."""

import numpy as np
import pytest
import torch

from icrl_agent.solvers import (
    discounted_q,
    evaluate_policy,
    finite_horizon_q,
    greedy_policy,
    optimal_value,
    policy_value,
    random_value,
)


def random_mdp(rng, n_states=5, n_actions=3, n_terminal=1):
    P = rng.dirichlet(np.ones(n_states) * 0.5, size=(n_states, n_actions))
    R = rng.normal(size=(n_states, n_actions))
    terminal = np.zeros(n_states, dtype=bool)
    terminal[rng.choice(n_states, n_terminal, replace=False)] = True
    return P, R, terminal


def numpy_backward_induction(P, R, terminal, horizon):
    n_states, n_actions = R.shape
    q = np.zeros((horizon, n_states, n_actions))
    v = np.zeros(n_states)
    for t in reversed(range(horizon)):
        for s in range(n_states):
            for a in range(n_actions):
                q[t, s, a] = R[s, a] + sum(P[s, a, s2] * v[s2] * (not terminal[s2]) for s2 in range(n_states))
        v = q[t].max(axis=1)
    return q[::-1]  # solvers index by steps to go


class TinyModel:
    def __init__(self, P, R, terminal, init, horizon):
        self._model = (P, R, terminal)
        self._init = init
        self.horizon = horizon

    def transition_matrix(self):
        return self._model

    def initial_distribution(self):
        return self._init


def test_finite_horizon_matches_numpy_loops():
    rng = np.random.default_rng(0)
    P, R, terminal = random_mdp(rng)
    q = finite_horizon_q(P, R, 7, terminal)
    np.testing.assert_allclose(q.numpy(), numpy_backward_induction(P, R, terminal, 7), atol=1e-12)


def test_batched_solve_equals_one_by_one():
    rng = np.random.default_rng(1)
    mdps = [random_mdp(rng) for _ in range(4)]
    P, R, terminal = (np.stack(parts) for parts in zip(*mdps, strict=True))
    batched = finite_horizon_q(P, R, 5, terminal)
    for b, (Pb, Rb, tb) in enumerate(mdps):
        torch.testing.assert_close(batched[b], finite_horizon_q(Pb, Rb, 5, tb))
    torch.testing.assert_close(discounted_q(P, R, 0.9, terminal)[2], discounted_q(*mdps[2][:2], 0.9, mdps[2][2]))


def test_discounted_q_is_a_fixed_point_and_greedy_evaluation_agrees():
    rng = np.random.default_rng(2)
    P, R, terminal = random_mdp(rng)
    q = discounted_q(P, R, 0.95, terminal)
    alive = torch.as_tensor(~terminal, dtype=q.dtype)
    backup = torch.as_tensor(R) + 0.95 * torch.einsum("sat,t->sa", torch.as_tensor(P), alive * q.amax(-1))
    torch.testing.assert_close(q, backup, atol=1e-8, rtol=0)
    v = evaluate_policy(P, R, greedy_policy(q), gamma=0.95, terminal=terminal)
    torch.testing.assert_close(v, q.amax(-1), atol=1e-8, rtol=0)


def test_optimal_policy_evaluates_to_optimal_value_and_beats_random():
    rng = np.random.default_rng(3)
    P, R, terminal = random_mdp(rng, n_states=6)
    init = rng.dirichlet(np.ones(6))
    model = TinyModel(P, R, terminal, init, horizon=9)
    q = finite_horizon_q(P, R, 9, terminal)
    assert policy_value(model, greedy_policy(q)) == pytest.approx(optimal_value(model), abs=1e-12)
    assert optimal_value(model) >= random_value(model)
    assert optimal_value(model, gamma=0.9) >= random_value(model, gamma=0.9)


def test_terminal_states_are_worth_zero():
    P = np.zeros((2, 1, 2))
    P[0, 0, 1] = 1.0
    P[1, 0, 1] = 1.0
    R = np.array([[1.0], [5.0]])
    q = finite_horizon_q(P, R, 4, np.array([False, True]))
    assert q[0, 0, 0].item() == 1.0  # reward of the transition, then nothing


@pytest.mark.parametrize("bad", [dict(horizon=0), dict(gamma=1.0)])
def test_bad_parameters_are_refused(bad):
    rng = np.random.default_rng(4)
    P, R, terminal = random_mdp(rng)
    with pytest.raises(ValueError):
        if "horizon" in bad:
            finite_horizon_q(P, R, bad["horizon"], terminal)
        else:
            discounted_q(P, R, bad["gamma"], terminal)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shapes"):
        finite_horizon_q(np.ones((3, 2, 4)) / 4, np.zeros((3, 2)), 3)
