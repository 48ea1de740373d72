"""The Agent's contract (API.md): actions, determinism, save/load, checkpoints, in-context wrappers."""

import dataclasses
import json
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from icrl_agent import InContextWrapper
from icrl_agent.agent import Agent
from icrl_agent.checkpoint import save_checkpoint
from icrl_agent.model import IcrlModel, ModelConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return IcrlModel(ModelConfig(d_model=16, n_heads=2, n_rounds=2))


def make_agent(env, model, seed=0):
    return Agent(env.observation_space, env.action_space, seed=seed, model=model)


def run(agent, env, steps, seed=0):
    """A plain act/observe loop; returns the actions taken."""
    actions = []
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        action = agent.act(obs)
        actions.append(action)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        agent.observe(obs, action, reward, next_obs, terminated, truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return actions


def test_act_returns_an_int_of_the_action_space_even_for_unseen_observations(model):
    obs_space = spaces.Discrete(5, start=10)
    act_space = spaces.Discrete(3, start=-1)
    agent = Agent(obs_space, act_space, seed=0, model=model)
    for obs in range(10, 15):
        action = agent.act(obs)
        assert isinstance(action, (int, np.integer)) and act_space.contains(action)
    agent.observe(10, -1, 1.0, 11, False, False)
    assert act_space.contains(agent.act(10)) and act_space.contains(agent.act(14))


def test_same_seed_same_actions_and_deterministic_is_stable(model):
    env = gym.make("icrl/RiverSwim-v0")
    first = run(make_agent(env, model, seed=3), env, 120)
    second = run(make_agent(env, model, seed=3), env, 120)
    assert first == second
    agent = make_agent(env, model)
    run(agent, env, 60)
    greedy = [agent.act(s, deterministic=True) for s in range(6)]
    assert greedy == [agent.act(s, deterministic=True) for s in range(6)]


def test_save_load_round_trip_continues_identically(model, tmp_path):
    env = gym.make("icrl/RiverSwim-v0")
    ckpt = save_checkpoint(tmp_path / "ckpt", model, config={}, card={})
    agent = Agent.from_pretrained(ckpt, env.observation_space, env.action_space, seed=1)
    run(agent, env, 75)  # stops mid-episode: the open episode and the cached plan must survive
    agent.save(tmp_path / "agent.bin")
    assert (tmp_path / "agent.bin").exists()
    restored = Agent.load(tmp_path / "agent.bin")
    assert restored.stats.state_dict()[1] == agent.stats.state_dict()[1]
    env_a, env_b = gym.make("icrl/RiverSwim-v0"), gym.make("icrl/RiverSwim-v0")
    assert run(agent, env_a, 80, seed=9) == run(restored, env_b, 80, seed=9)


def test_save_load_round_trip_keeps_the_bonuses_an_episode_took(tmp_path):
    """With ``count_bonuses_taken`` (the shipped tensors), the saved agent holds the plan's layers and the open
    episode's count of bonuses left, and the restored one continues identically."""
    shipped = Agent(spaces.Discrete(6), spaces.Discrete(2))
    config = dataclasses.replace(shipped.model.config, count_bonuses_taken=True)
    model = IcrlModel(config)
    model.load_state_dict(shipped.model.state_dict())
    ckpt = save_checkpoint(tmp_path / "ckpt", model, config={}, card={})
    env = gym.make("icrl/RiverSwim-v0")
    agent = Agent.from_pretrained(ckpt, env.observation_space, env.action_space, seed=1)
    run(agent, env, 75)
    assert agent._bonuses_left and agent._plans[True] is not None and agent._plans[True].layers is not None
    agent.save(tmp_path / "agent.npz")
    restored = Agent.load(tmp_path / "agent.npz")
    assert restored._bonuses_left == agent._bonuses_left
    env_a, env_b = gym.make("icrl/RiverSwim-v0"), gym.make("icrl/RiverSwim-v0")
    assert run(agent, env_a, 80, seed=9) == run(restored, env_b, 80, seed=9)


def test_shipped_weights_reference_survives_save_load_save(tmp_path):
    agent = Agent(spaces.Discrete(3), spaces.Discrete(2), seed=0)
    agent.save(tmp_path / "a.npz")
    restored = Agent.load(tmp_path / "a.npz")
    assert restored.weights == agent.weights and restored.weights["source"] == "shipped"


@pytest.mark.parametrize("damage", ["truncate", "drop_seed", "drop_stats", "drop_plan"])
def test_a_corrupt_agent_file_is_a_value_error(model, tmp_path, damage):
    env = gym.make("icrl/RiverSwim-v0")
    agent = Agent.from_pretrained(save_checkpoint(tmp_path / "ckpt", model, config={}, card={}), env.observation_space,
                                  env.action_space)
    run(agent, env, 30)
    agent.save(tmp_path / "agent.npz")
    raw = (tmp_path / "agent.npz").read_bytes()
    if damage == "truncate":
        (tmp_path / "agent.npz").write_bytes(raw[: len(raw) // 2])
    else:
        with np.load(tmp_path / "agent.npz") as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays["meta"]))
        if damage == "drop_plan":
            arrays = {k: v for k, v in arrays.items() if not k.startswith("plan/")}
        else:
            del meta[damage.removeprefix("drop_")]
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(tmp_path / "agent.npz", **arrays)
    with pytest.raises(ValueError, match="agent.npz is .*agent file"):
        Agent.load(tmp_path / "agent.npz")


@pytest.mark.parametrize("change", ["retrained", "corrupted", "recorded_sha256"])
def test_load_refuses_weights_that_changed_since_the_agent_was_saved(model, tmp_path, change):
    env = gym.make("icrl/RiverSwim-v0")
    ckpt = save_checkpoint(tmp_path / "ckpt", model, config={}, card={})
    agent = Agent.from_pretrained(ckpt, env.observation_space, env.action_space)
    run(agent, env, 10)
    agent.save(tmp_path / "agent.npz")
    if change == "retrained":  # a valid checkpoint with other weights, written at the same path
        torch.manual_seed(1)
        save_checkpoint(tmp_path / "ckpt", IcrlModel(ModelConfig(d_model=16, n_heads=2, n_rounds=2)), {}, {})
    elif change == "corrupted":
        raw = bytearray(ckpt.read_bytes())
        raw[-1] ^= 0xFF
        ckpt.write_bytes(bytes(raw))
    else:  # the file claims other weights than the ones at its path (e.g. the shipped ones were updated)
        with np.load(tmp_path / "agent.npz") as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays["meta"]))
        meta["weights"]["sha256"] = "0" * 64
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(tmp_path / "agent.npz", **arrays)
    with pytest.raises(ValueError, match="sha256"):
        Agent.load(tmp_path / "agent.npz")


def test_a_numpy_integer_seed_saves_and_loads(model, tmp_path):
    env = gym.make("icrl/RiverSwim-v0")
    ckpt = save_checkpoint(tmp_path / "ckpt", model, config={}, card={})
    agent = Agent.from_pretrained(ckpt, env.observation_space, env.action_space, seed=np.int64(3))
    run(agent, env, 10)
    agent.save(tmp_path / "agent.npz")
    restored = Agent.load(tmp_path / "agent.npz")
    assert restored.seed == 3 and run(restored, env, 20, seed=1) == run(agent, env, 20, seed=1)


def test_a_pickle_given_as_checkpoint_is_refused_unexecuted(model, tmp_path):
    sentinel = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))

    bad = tmp_path / "agent.pkl"
    bad.write_bytes(pickle.dumps(Evil()))
    env = gym.make("icrl/RiverSwim-v0")
    with pytest.raises(ValueError, match="pickle"):
        Agent.load(bad)
    with pytest.raises(ValueError):
        Agent.from_pretrained(bad, env.observation_space, env.action_space)
    assert not sentinel.exists()


def test_bad_input_raises_and_leaves_statistics_unchanged(model):
    with pytest.raises(TypeError, match="Box"):
        Agent(spaces.Box(0, 1, (2,)), spaces.Discrete(2), model=model)
    with pytest.raises(TypeError, match="Discrete"):
        Agent(spaces.Discrete(3), spaces.Box(0, 1, (1,)), model=model)
    agent = Agent(spaces.Discrete(3), spaces.Discrete(2), model=model)
    agent.observe(0, 1, 0.5, 1, False, False)
    before = agent.stats.state_dict()
    for bad in [(7, 0, 0.0, 1), (0, 5, 0.0, 1), (0, 0, float("nan"), 1), (0, 0, float("inf"), 1), (0, 0, 1.0, -1)]:
        with pytest.raises(ValueError):
            agent.observe(*bad, False, False)
    with pytest.raises(ValueError):
        agent.act(3)
    after = agent.stats.state_dict()
    assert after[1] == before[1]
    for key, value in before[0].items():
        np.testing.assert_array_equal(after[0][key], value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_plan_with_a_non_finite_value_is_a_clear_error_and_keeps_the_statistics(model, monkeypatch, bad):
    """A NaN or +inf in Q (icrl-v2.2's uncapped spread bonus overflowed on FrozenLake8x8) cannot rank actions:
    the agent says so instead of failing inside the action choice, and what it observed stays."""
    agent = Agent(spaces.Discrete(3), spaces.Discrete(2), model=model)
    agent.observe(0, 1, 0.5, 1, False, False)
    before = agent.stats.state_dict()
    forward = IcrlModel.forward_sparse

    def poisoned(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        out.q[0, -1, 0, 0] = bad
        return out

    monkeypatch.setattr(IcrlModel, "forward_sparse", poisoned)
    with pytest.raises(FloatingPointError, match="exploring plan over .* non-finite value"):
        agent.act(0)
    with pytest.raises(FloatingPointError, match="exploitation plan"):
        agent.act(0, deterministic=True)
    after = agent.stats.state_dict()
    for key, value in before[0].items():
        np.testing.assert_array_equal(after[0][key], value)


def test_fit_is_atomic_and_feeds_the_exploitation_policy(model):
    agent = Agent(spaces.Discrete(3), spaces.Discrete(2), model=model)
    good = {
        "observations": np.array([0, 1, 0]),
        "actions": np.array([1, 1, 0]),
        "rewards": np.array([0.0, 1.0, 0.0]),
        "next_observations": np.array([1, 2, 0]),
        "terminations": np.array([False, True, False]),
    }
    bad = dict(good, rewards=np.array([0.0, np.nan, 0.0]))
    with pytest.raises(ValueError):
        agent.fit(bad)
    assert agent.stats.n_transitions == 0
    assert agent.fit(good) == 3
    assert agent.stats.n_transitions == 3
    assert agent.policy(deterministic=True).shape == (agent.stats.n_states, 2)


def test_sb3_evaluate_policy_learns_in_context_through_the_wrapper(model):
    evaluation = pytest.importorskip("stable_baselines3.common.evaluation")
    env = gym.make("icrl/RiverSwim-v0")
    agent = make_agent(env, model)
    wrapped = InContextWrapper(env, agent)
    rewards, lengths = evaluation.evaluate_policy(
        agent, wrapped, n_eval_episodes=3, deterministic=False, return_episode_rewards=True, warn=False
    )
    assert len(rewards) == 3
    assert agent.stats.n_transitions == sum(lengths)
    assert agent.stats.n_episodes == 3


def test_vector_env_sub_envs_share_one_agent_and_reset_steps_are_not_counted(model):
    env_id = "icrl/RiverSwim-v0"
    probe = gym.make(env_id)
    agent = make_agent(probe, model)
    vec = gym.vector.SyncVectorEnv([lambda: InContextWrapper(gym.make(env_id), agent) for _ in range(3)])
    obs, _ = vec.reset(seed=0)
    steps = 0
    for _ in range(50):
        actions, _ = agent.predict(obs)
        assert actions.shape == (3,)
        obs, _, terminated, truncated, _ = vec.step(actions)
        steps += 3
    # RiverSwim episodes last 20 steps: the autoreset steps after each episode end are not transitions
    ended = agent.stats.n_episodes
    assert ended == 6
    assert agent.stats.n_transitions == steps - 3 * 2


def test_wrapper_reset_mid_episode_abandons_it_instead_of_continuing_it(model):
    # regression: a reset before the episode's end left the stream's step counter running, so the next
    # episode was counted as its continuation (one 25-step episode, horizon inferred 25 on RiverSwim's 20)
    env = gym.make("icrl/RiverSwim-v0")
    agent = make_agent(env, model)
    wrapped = InContextWrapper(env, agent)
    wrapped.reset(seed=0)
    for _ in range(5):
        wrapped.step(1)
    wrapped.reset()
    assert agent.stats.stream_step(wrapped.stream) == 0
    done = False
    while not done:
        _, _, terminated, truncated, _ = wrapped.step(1)
        done = terminated or truncated
    assert agent.stats.episode_lengths == [20]
    assert agent.horizon == 20 and agent.stats.n_transitions == 25


def test_shipped_weights_load_and_match_their_model_card():
    import json

    from icrl_agent.agent import shipped_weights_path
    from icrl_agent.checkpoint import checkpoint_sha256

    path = shipped_weights_path()
    card = json.loads(path.with_suffix(".json").read_text())
    assert checkpoint_sha256(path) == card["sha256"]
    assert card["training"]["command"].startswith("python -m icrl_agent.pretraining ")  # a stage, or missing-mass
    env = gym.make("icrl/RiverSwim-v0")
    agent = Agent(env.observation_space, env.action_space, seed=0)
    assert agent.weights["source"] == "shipped" and agent.weights["sha256"] == card["sha256"]


def test_shipped_agent_beats_random_on_riverswim_told_nothing_across_seeds():
    """Ten seeds, 60 episodes each, normalized return of the last 20 (random 0, optimal 1, the 0.005 trap 0.017).

    Measured with icrl-v1 on seeds 0-39, in blocks of ten: block means 0.49, 0.62, 0.40, 0.77; seeds above
    0.7 per block 5, 5, 4, 7 (the others mostly stay in the trap, a known loss, README). An agent that reads
    its plan by elapsed step instead of steps to go scores 0.19 on seeds 0-19 with no seed above 0.65.
    """
    from icrl_agent.bench.common import env_reference
    from icrl_agent.bench.report import normalize

    env = gym.make("icrl/RiverSwim-v0")
    ref = env_reference("icrl/RiverSwim-v0")
    shipped = Agent(env.observation_space, env.action_space).model
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster and leaves the other cores to other tests
    try:
        scores = []
        for seed in range(10):
            agent = Agent(env.observation_space, env.action_space, seed=seed, model=shipped)
            returns = agent.learn(env, total_episodes=60, seed=seed)
            scores.append(normalize(returns[-20:], ref.optimal, ref.random).mean())
    finally:
        torch.set_num_threads(threads)
    scores = np.array(scores)
    assert scores.mean() > 0.25, scores.round(3)
    assert (scores > 0.7).sum() >= 2, scores.round(3)


def test_an_agent_saved_with_earlier_shipped_weights_loads_them_after_the_default_changed(tmp_path):
    """icrl-v1 stays in the package when icrl-v2 becomes the default: an agent saved with it must still load it."""
    from icrl_agent.agent import SHIPPED_WEIGHTS, shipped_weights_path

    env = gym.make("icrl/RiverSwim-v0")
    v1 = shipped_weights_path().with_name("icrl-v1.safetensors")
    assert SHIPPED_WEIGHTS != "icrl-v1" and v1.is_file()
    agent = Agent(env.observation_space, env.action_space, seed=3, weights=v1)
    assert agent.weights["source"] == "shipped" and agent.weights["name"] == "icrl-v1"
    agent.learn(env, total_episodes=2, seed=0)
    agent.save(tmp_path / "agent.npz")
    loaded = Agent.load(tmp_path / "agent.npz")
    assert loaded.weights == agent.weights
    assert [loaded.act(s) for s in range(6)] == [agent.act(s) for s in range(6)]
    # a file outside the package is a path, not a shipped name
    other = Agent.from_pretrained(v1, env.observation_space, env.action_space)
    assert other.weights["name"] == "icrl-v1"
    (tmp_path / "copy.safetensors").write_bytes(v1.read_bytes())
    (tmp_path / "copy.json").write_bytes(v1.with_suffix(".json").read_bytes())
    copy = Agent(env.observation_space, env.action_space, weights=tmp_path / "copy")
    assert copy.weights["source"] == "path"


def test_learn_and_the_bench_run_the_same_episode_loop():
    """One loop (base.play_episode) behind learn, the bench and the demo: same seeds, same returns."""
    from icrl_agent.baselines import OptimisticVI
    from icrl_agent.bench.common import run_episodes

    def fresh():
        env = gym.make("icrl/FrozenLake4x4-v0")  # slippery: the env's RNG stream shows in the returns
        return env, OptimisticVI(env.observation_space, env.action_space, seed=1, horizon=100, reward_max=1.0)

    env, agent = fresh()
    learned = agent.learn(env, total_episodes=30, seed=7)
    env, agent = fresh()
    benched = run_episodes(agent, env, 30, 7, env.unwrapped.horizon)
    assert learned == benched and len(set(learned)) > 1
