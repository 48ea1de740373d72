"""Edge cases of the planning core that the main solver tests leave open (found by mutation testing).

Each test pins a behaviour a caller relies on: batched discounted evaluation, gamma = 0, the uniform
policy's value at an explicit horizon or discount, greedy policies over every action, edge arrays of any
integer dtype, and the sparse back-end agreeing with the dense one.
"""

import numpy as np
import pytest
import torch

from icrl_agent.solvers import (
    DenseTransitions,
    SparseTransitions,
    backward_induction,
    discounted_q,
    evaluate_policy,
    finite_horizon_q,
    greedy_policy,
    optimal_value,
    random_value,
    to_go_index,
)


def random_mdp(rng, n_states=4, n_actions=3):
    P = rng.dirichlet(np.ones(n_states), size=(n_states, n_actions))
    R = rng.normal(size=(n_states, n_actions))
    return P, R


class TinyModel:
    def __init__(self, P, R, init, horizon):
        self.P, self.R, self.init, self.horizon = P, R, init, horizon

    def transition_matrix(self):
        return self.P, self.R, np.zeros(self.P.shape[0], dtype=bool)

    def initial_distribution(self):
        return self.init


def numpy_uniform_value(P, R, init, horizon=None, gamma=None):
    n_states, n_actions = R.shape
    p_pi, r_pi = P.mean(axis=1), R.mean(axis=1)
    if gamma is not None:
        return init @ np.linalg.solve(np.eye(n_states) - gamma * p_pi, r_pi)
    v = np.zeros(n_states)
    for _ in range(horizon):
        v = r_pi + p_pi @ v
    return init @ v


def test_batched_discounted_evaluation_equals_one_by_one():
    rng = np.random.default_rng(0)
    mdps = [random_mdp(rng) for _ in range(3)]
    P = np.stack([m[0] for m in mdps])
    R = np.stack([m[1] for m in mdps])
    policy = rng.dirichlet(np.ones(3), size=(3, 4))
    batched = evaluate_policy(P, R, policy, gamma=0.8)
    assert batched.shape == (3, 4)
    for b in range(3):
        torch.testing.assert_close(batched[b], evaluate_policy(P[b], R[b], policy[b], gamma=0.8))


def test_discount_zero_is_allowed_and_values_only_the_reward():
    rng = np.random.default_rng(1)
    P, R = random_mdp(rng)
    torch.testing.assert_close(discounted_q(P, R, 0.0), torch.as_tensor(R))


@pytest.mark.parametrize("gamma", [-0.1, 1.0])
def test_a_discount_outside_0_1_is_refused_with_its_value(gamma):
    rng = np.random.default_rng(2)
    P, R = random_mdp(rng)
    with pytest.raises(ValueError, match="gamma"):
        discounted_q(P, R, gamma)


def test_random_value_honours_an_explicit_horizon_and_discount():
    rng = np.random.default_rng(3)
    P, R = random_mdp(rng, n_states=5)
    init = rng.dirichlet(np.ones(5))
    model = TinyModel(P, R, init, horizon=6)
    assert random_value(model) == pytest.approx(numpy_uniform_value(P, R, init, horizon=6))
    assert random_value(model, horizon=2) == pytest.approx(numpy_uniform_value(P, R, init, horizon=2))
    assert random_value(model, gamma=0.7) == pytest.approx(numpy_uniform_value(P, R, init, gamma=0.7))


def test_greedy_policy_is_one_hot_over_every_action_in_the_values_dtype():
    q = torch.tensor([[1.0, 0.0, -1.0], [2.0, 3.0, 0.0]], dtype=torch.float64)  # last action never best
    pi = greedy_policy(q)
    assert pi.dtype == q.dtype
    torch.testing.assert_close(pi, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_sparse_edges_of_any_integer_dtype_plan_like_dense(dtype):
    rng = np.random.default_rng(4)
    P, R = random_mdp(rng, n_states=4, n_actions=2)
    P[P < 0.2] = 0.0
    P /= P.sum(-1, keepdims=True)
    s, a, s2 = np.nonzero(P)
    sparse = SparseTransitions.from_numpy((s * 2 + a).astype(dtype), s2.astype(dtype), P[s, a, s2], 4, 2)
    dense = DenseTransitions(torch.as_tensor(P))
    R_t = torch.as_tensor(R)
    q_sparse = backward_induction(lambda k, v: sparse.expect(v, R_t), 5, R_t.new_zeros(4))
    q_dense = backward_induction(lambda k, v: dense.expect(v, R_t), 5, R_t.new_zeros(4))
    torch.testing.assert_close(q_sparse, q_dense)
    torch.testing.assert_close(q_dense, finite_horizon_q(P, R, 5))


def test_to_go_index_reads_the_last_step_at_and_past_the_horizon():
    assert [to_go_index(4, t) for t in range(6)] == [3, 2, 1, 0, 0, 0]


@pytest.mark.parametrize("kind", ["horizon", "gamma"])
def test_a_deterministic_policy_given_as_integers_or_float32_evaluates_like_float64(kind):
    rng = np.random.default_rng(5)
    P, R = random_mdp(rng)
    one_hot = np.eye(3, dtype=np.int64)[rng.integers(3, size=4)]
    args = dict(horizon=5) if kind == "horizon" else dict(gamma=0.9)
    expected = evaluate_policy(P, R, one_hot.astype(np.float64), **args)
    torch.testing.assert_close(evaluate_policy(P, R, one_hot, **args), expected)
    torch.testing.assert_close(evaluate_policy(P, R, one_hot.astype(np.float32), **args), expected)


@pytest.mark.parametrize("args", [dict(), dict(horizon=3, gamma=0.9)])
def test_evaluate_policy_needs_exactly_one_of_horizon_and_gamma(args):
    rng = np.random.default_rng(6)
    P, R = random_mdp(rng)
    with pytest.raises(ValueError, match=r"^give exactly one of horizon= .* or gamma="):
        evaluate_policy(P, R, np.full((4, 3), 1 / 3), **args)


class TerminalModel:
    """0 -(a0: reward 1)-> 1 (terminal, would pay 10 per step if it were not), as a plain-list model."""

    horizon = 4

    def transition_matrix(self):
        P = np.zeros((2, 2, 2))
        P[0, :, 1] = 1.0
        P[1, :, 1] = 1.0
        R = np.array([[1.0, 0.0], [10.0, 10.0]])
        return P, R, np.array([False, True])

    def initial_distribution(self):
        return [1, 0]  # integers, not float64


@pytest.mark.parametrize("gamma", [None, 0.9])
def test_env_values_leave_terminal_states_out_and_take_any_initial_distribution(gamma):
    model = TerminalModel()
    assert optimal_value(model, gamma=gamma) == pytest.approx(1.0)
    assert random_value(model, gamma=gamma) == pytest.approx(0.5)


def test_rewards_terminal_flags_and_policies_follow_the_transitions_dtype():
    rng = np.random.default_rng(7)
    P, R = random_mdp(rng)
    terminal = np.array([False, False, True, False])
    exact = finite_horizon_q(P, R, 4, terminal)
    # float64 transitions: a float32 reward tensor is widened, not the other way round
    q = finite_horizon_q(torch.as_tensor(P), torch.as_tensor(R, dtype=torch.float32), 4, terminal)
    assert q.dtype == torch.float64
    torch.testing.assert_close(q, finite_horizon_q(P, R.astype(np.float32).astype(np.float64), 4, terminal))
    # float32 transitions: float64 numpy rewards follow them
    q32 = finite_horizon_q(torch.as_tensor(P, dtype=torch.float32), R, 4, terminal)
    assert q32.dtype == torch.float32
    torch.testing.assert_close(q32, exact.float(), rtol=1e-5, atol=1e-5)
    policy = torch.full((4, 3), 1 / 3, dtype=torch.float32)
    v = evaluate_policy(torch.as_tensor(P), torch.as_tensor(R), policy, gamma=0.9, terminal=terminal)
    assert v.dtype == torch.float64


def test_numpy_inputs_of_any_float_width_are_solved_in_float64():
    rng = np.random.default_rng(8)
    P, R = random_mdp(rng)
    q = finite_horizon_q(P.astype(np.float32), R.astype(np.float32), 3)
    assert q.dtype == torch.float64
    widened = (x.astype(np.float32).astype(np.float64) for x in (P, R))
    torch.testing.assert_close(q, finite_horizon_q(*widened, 3))


def test_a_shape_mismatch_names_both_shapes_and_what_they_must_be():
    message = r"^model shapes do not match: P \(3, 2, 4\) must be \[\.\.\., S, A, S\] and R \(3, 2\) must be \[\.\.\., S, A\]$"
    with pytest.raises(ValueError, match=message):
        finite_horizon_q(np.ones((3, 2, 4)) / 4, np.zeros((3, 2)), 3)


def test_a_horizon_below_one_is_refused_with_its_value():
    with pytest.raises(ValueError, match="horizon must be >= 1, got 0"):
        backward_induction(lambda k, v: v[:, None], 0, torch.zeros(2))


@pytest.mark.parametrize("with_base", [False, True])
def test_expect_each_is_bit_for_bit_each_expect_on_both_back_ends(with_base):
    """The layered plans back up their layers' values in one ``expect_each``: it must give each ``expect`` exactly,
    so the shipped agent's trajectories do not depend on how the layers are batched, and leave ``base`` as it was."""
    rng = np.random.default_rng(7)
    P, R = random_mdp(rng, n_states=6, n_actions=3)
    P[P < 0.1] = 0.0
    s, a, s2 = np.nonzero(P)
    sparse = SparseTransitions.from_numpy(s * 3 + a, s2, P[s, a, s2], 6, 3)
    dense = DenseTransitions(torch.as_tensor(P)[None].expand(2, -1, -1, -1))
    for transitions, batch in ((sparse, 1), (dense, 2)):
        values = torch.as_tensor(rng.normal(size=(4, batch, 6)))
        base = torch.as_tensor(rng.normal(size=(batch, 6, 3))) if with_base else None
        before = None if base is None else base.clone()
        each = transitions.expect_each(values, base)
        one_by_one = torch.stack([transitions.expect(v, base) for v in values])
        assert each.shape == (4, batch, 6, 3)
        assert torch.equal(each, one_by_one)
        assert not torch.equal(each[0], each[1])  # each value vector gets its own backup
        if base is not None:
            assert torch.equal(base, before)
