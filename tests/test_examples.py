"""Smoke tests of examples/: each script runs as a user would run it (small budgets) and prints its results."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NUMBER = r"-?\d+\.\d+"


def run_script(
    command: list[str], *args: str, cwd: Path, env: dict[str, str | None] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a script in a fresh interpreter from ``cwd``, torch threads left as a user gets them."""
    full_env = {**os.environ, **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}  # None unsets a variable
    proc = subprocess.run(
        [sys.executable, *command, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=180,
    )
    if check:
        assert proc.returncode == 0, f"{command} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def run_example(name: str, *args: str, cwd: Path, env: dict[str, str | None] | None = None) -> str:
    """Run ``examples/<name>`` in a fresh interpreter from ``cwd``; its stdout (the test fails on exit != 0)."""
    return run_script([str(EXAMPLES / name)], *args, cwd=cwd, env=env).stdout


def test_quickstart(tmp_path):
    out = run_example("quickstart.py", "--episodes", "12", "--every", "4", cwd=tmp_path)
    assert len(re.findall(rf"episodes +\d+-\d+ +mean return +{NUMBER}", out)) == 3
    assert re.search(r"greedy policy \(observation=action\), in the order states were met: 0=(left|right)", out)
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


# ---------------------------------------------------------------------- any Gymnasium id (issue 16)

GYM_IDS = ("FrozenLake-v1", "CliffWalking-v1", "Taxi-v4")  # CliffWalking-v1 has no time limit
NO_MODEL_ID = "Blackjack-v1"  # a Tuple observation space and no transition table


@pytest.mark.parametrize("env_id", GYM_IDS)
def test_quickstart_on_plain_gymnasium_ids_scores_from_their_transition_tables(tmp_path, env_id):
    out = run_example("quickstart.py", "--env", env_id, "--episodes", "2", "--every", "1", "--eval-episodes", "1",
                      cwd=tmp_path)
    assert re.search(rf"{env_id}: .*; optimal return {NUMBER}, random {NUMBER}", out)
    assert len(re.findall(rf"episodes +\d+-\d+ +mean return +{NUMBER}", out)) == 2
    assert re.search(rf"expected return of the greedy policy {NUMBER} \(optimal {NUMBER}, random {NUMBER}\)", out)


def test_quickstart_on_an_env_without_a_model_shows_raw_returns(tmp_path):
    out = run_example("quickstart.py", "--env", NO_MODEL_ID, "--episodes", "2", "--every", "1",
                      "--eval-episodes", "1", cwd=tmp_path)
    assert f"{NO_MODEL_ID}: " in out and "no exact model: raw returns are shown" in out
    assert re.search(rf"mean return of the greedy policy over 1 episodes {NUMBER} \(raw return", out)


def test_quickstart_names_the_envs_own_actions(tmp_path):
    out = run_example("quickstart.py", "--env", "Taxi-v4", "--episodes", "1", "--every", "1",
                      "--eval-episodes", "1", cwd=tmp_path)
    policy = re.search(r"greedy policy \(observation=action\), in the order states were met: (.*)", out).group(1)
    actions = set(re.findall(r"\d+=(\w+)", policy))
    assert actions and actions <= {"south", "north", "east", "west", "pickup", "dropoff"}, policy


@pytest.mark.parametrize(("env_id", "label"), [*((env_id, "normalized return (1 = optimal, 0 = random policy)")
                                                 for env_id in GYM_IDS),
                                               (NO_MODEL_ID, "return (raw: the env has no exact model to normalize with)")])
def test_demo_on_plain_gymnasium_ids_writes_its_plot_where_asked(tmp_path, env_id, label):
    out_png = tmp_path / "plots" / "curve.png"
    proc = run_script(["-m", "icrl_agent.demo"], "--env", env_id, "--episodes", "2", "--print-every", "1",
                      "--agents", "icrl,qlearning", "--out", str(out_png), cwd=tmp_path)
    assert f"mean {label} over all episodes" in proc.stdout
    assert re.search(rf"icrl +{NUMBER}", proc.stdout) and re.search(rf"qlearning +{NUMBER}", proc.stdout)
    assert "icrl (told nothing)" in proc.stdout
    assert out_png.is_file() and list(tmp_path.iterdir()) == [tmp_path / "plots"]
    assert "%|" not in proc.stderr and "ep/s" not in proc.stderr  # no progress bar in a redirected log


def test_demo_default_plot_goes_to_the_git_ignored_runs_folder(tmp_path):
    proc = run_script(["-m", "icrl_agent.demo"], "--env", "RiverSwim", "--episodes", "2", "--print-every", "1",
                      "--agents", "icrl,optvi", cwd=tmp_path)
    assert (tmp_path / "runs" / "learning_curve.png").is_file()
    assert "normalized return (1 = optimal, 0 = random policy)" in proc.stdout
    assert "optvi (told the horizon and the reward scale)" in proc.stdout
    gitignore = (Path(__file__).resolve().parent.parent / ".gitignore").read_text().split()
    assert "runs/" in gitignore


@pytest.mark.parametrize(
    "command",
    [["-m", "icrl_agent.demo"], *([str(EXAMPLES / name)] for name in (
        "quickstart.py", "compare_baselines.py", "sb3_compare.py", "vector_envs.py", "offline.py", "minigrid.py",
        "retrain.py"))],
    ids=lambda c: "demo" if c[0] == "-m" else Path(c[-1]).stem,
)
def test_help_shows_defaults_and_a_bad_env_is_an_argparse_error(tmp_path, command):
    name = Path(command[-1]).stem
    if name in ("offline", "sb3_compare", "minigrid", "retrain"):
        module = {"offline": "minari", "sb3_compare": "stable_baselines3", "minigrid": "minigrid", "retrain": "yaml"}
        pytest.importorskip(module[name])
    helped = run_script(command, "--help", cwd=tmp_path)
    assert "(default: " in helped.stdout
    bad = run_script(command, "--env", "NoSuchEnv-v9", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "unknown env 'NoSuchEnv-v9'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("command", [["-m", "icrl_agent.demo"], [str(EXAMPLES / "compare_baselines.py")]],
                         ids=["demo", "compare_baselines"])
def test_a_bad_agent_name_is_an_argparse_error_listing_the_valid_ones(tmp_path, command):
    helped = run_script(command, "--help", cwd=tmp_path)
    assert "qlearning" in helped.stdout and "optvi" in helped.stdout
    bad = run_script(command, "--agents", "icrl,nosuchagent", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "unknown agent 'nosuchagent'" in bad.stderr and "optvi" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_compare_baselines_on_an_env_without_time_limit(tmp_path):
    out = run_example("compare_baselines.py", "--env", "CliffWalking-v1", "--agents", "random,optvi",
                      "--episodes", "2", "--seeds", "2", "--plot", str(tmp_path / "c.png"), cwd=tmp_path)
    assert "no time limit (episodes cut at 500 steps)" in out
    assert re.search(rf"optvi: mean normalized return {NUMBER}", out) and (tmp_path / "c.png").is_file()
