"""The README's code runs as written: every ```python block, in a fresh namespace, from a scratch directory."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_the_api_tour_and_the_sb3_snippet():
    assert len(BLOCKS) == 2
    assert "agent.observe(" in BLOCKS[0] and "evaluate_policy" in BLOCKS[1]


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda i: ("api_tour", "sb3_snippet")[i])
def test_readme_block_runs_as_written(tmp_path, monkeypatch, index):
    code = BLOCKS[index]
    if "stable_baselines3" in code:
        pytest.importorskip("stable_baselines3")
    monkeypatch.chdir(tmp_path)  # the tour writes agent.npz where it runs
    namespace: dict = {}
    exec(compile(code, f"README.md python block {index}", "exec"), namespace)
    agent = namespace["agent"]
    assert agent.stats.n_transitions > 0  # it learned from what it met
    if index == 0:
        assert (tmp_path / "agent.npz").is_file()
