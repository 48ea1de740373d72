"""Smoke tests of examples/: each script runs as a user would run it (small budgets) and prints its results."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NUMBER = r"-?\d+\.\d+"


def run_example(name: str, *args: str, cwd: Path, env: dict[str, str | None] | None = None) -> str:
    """Run ``examples/<name>`` in a fresh interpreter from ``cwd``; its stdout (the test fails on exit != 0)."""
    # One torch thread: the examples' networks are small, and threads only fight on a busy machine.
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}  # None unsets a variable
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_quickstart(tmp_path):
    out = run_example("quickstart.py", "--episodes", "12", "--every", "4", cwd=tmp_path)
    assert len(re.findall(rf"episodes +\d+-\d+ +mean return +{NUMBER}", out)) == 3
    assert re.search(r"greedy policy: s0=(left|right),", out)
    assert re.search(rf"expected return of the greedy policy {NUMBER} \(optimal {NUMBER}", out)
    assert "240 transitions seen" in out  # 12 RiverSwim episodes of 20 steps


def test_sb3_compare(tmp_path):
    pytest.importorskip("stable_baselines3", reason="the sb3 extra is not installed")
    out = run_example("sb3_compare.py", "--timesteps", "256", "--episodes", "3", cwd=tmp_path)
    for label in ("PPO, 256 training steps", "DQN, 256 training steps", "icrl agent, learning in context",
                  "icrl agent, greedy, frozen"):
        assert re.search(rf"{re.escape(label)}.* mean return {NUMBER} \+- {NUMBER} \(normalized", out), out


def test_vector_envs(tmp_path):
    out = run_example("vector_envs.py", "--n-envs", "3", "--episodes", "12", "--every", "6", cwd=tmp_path)
    assert re.search(rf"episodes +1-6 +mean return {NUMBER}", out)
    counts = re.search(r"true transitions (\d+), counted by the agent (\d+)", out)
    assert counts and counts.group(1) == counts.group(2)
    assert "counts match" in out


def test_offline_writes_nothing_outside_its_temporary_directory(tmp_path):
    pytest.importorskip("minari", reason="the offline extra is not installed")
    pytest.importorskip("jax", reason="minari's DataCollector needs minari[create] (JAX)")
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "MINARI_DATASETS_PATH": None}  # Minari's default would be ~/.minari
    out = run_example("offline.py", "--episodes", "20", "--eval-episodes", "5", cwd=tmp_path, env=env)
    added = re.search(r"recorded 20 episodes, (\d+) steps in (\S+); agent.fit added (\d+) transitions", out)
    assert added and added.group(1) == added.group(3)
    assert re.search(rf"agent, greedy, 5 episodes +mean return {NUMBER} \(normalized {NUMBER}\)", out)
    assert "dataset deleted" in out
    assert not Path(added.group(2)).exists()
    assert not (home / ".minari").exists()


def test_minigrid(tmp_path):
    pytest.importorskip("minigrid", reason="the minigrid extra is not installed")
    out = run_example("minigrid.py", "--episodes", "4", "--every", "2", cwd=tmp_path)
    assert re.search(r"icrl/MiniGrid-DoorKey-5x5-v0: \d+ states, 5 actions", out)
    assert len(re.findall(rf"success rate {NUMBER}, mean length +{NUMBER}, states met \d+/\d+", out)) == 2
    assert re.search(rf"greedy policy: expected return {NUMBER}, normalized {NUMBER}", out)


def test_retrain(tmp_path):
    pytest.importorskip("yaml", reason="the pretraining extra is not installed")
    pytest.importorskip("tensorboard", reason="the pretraining extra is not installed")
    run_dir = tmp_path / "run"
    out = run_example("retrain.py", "--steps", "4", "--episodes", "2", "--out", str(run_dir), cwd=tmp_path)
    assert re.search(r"pretrained 4 steps \+ \d+ ES generations", out)
    assert (run_dir / "icrl_pretrained.safetensors").is_file()
    assert re.search(rf"retrained agent: mean return {NUMBER}", out)
    assert re.search(rf"shipped agent: mean return {NUMBER}", out)


def test_compare_baselines(tmp_path):
    out = run_example(
        "compare_baselines.py", "--agents", "random,optvi", "--episodes", "5", "--seeds", "2",
        "--plot", str(tmp_path / "curves.png"), cwd=tmp_path,
    )
    assert re.search(r"optvi: mean normalized return", out)
    assert (tmp_path / "curves.png").is_file()
