"""The package's layering: what each module may import (DESIGN §0), and the lazy package init."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("icrl_agent.model", "icrl_agent.agent", "icrl_agent.checkpoint", "icrl_agent.wrappers")

# module (as installed) -> icrl_agent modules it must never import, directly or through its package
FORBIDDEN = {
    "icrl_agent.solvers": ("icrl_agent.stats", "icrl_agent.model", "icrl_agent.envs", "icrl_agent.agent"),
    "icrl_agent.stats": ("icrl_agent.model", "icrl_agent.agent", "icrl_agent.pretraining"),
    "icrl_agent.model": ("icrl_agent.pretraining", "icrl_agent.agent", "icrl_agent.stats"),
    "icrl_agent.agent": ("icrl_agent.pretraining", "icrl_agent.bench"),
    "icrl_agent.planning_agent": ("icrl_agent.model", "icrl_agent.agent", "icrl_agent.pretraining"),
    "icrl_agent.envs": ("icrl_agent.agent", "icrl_agent.baselines", "icrl_agent.model"),
    "icrl_agent.baselines": ("icrl_agent.model", "icrl_agent.agent", "icrl_agent.pretraining"),
}
SOURCES = {
    "icrl_agent.envs": ROOT / "envs",
    "icrl_agent.baselines": ROOT / "baselines",
}


def _files(module: str) -> list[Path]:
    if module in SOURCES:
        return sorted(SOURCES[module].glob("*.py"))
    path = ROOT / Path(*module.split("."))
    return sorted(path.glob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_no_module_imports_against_the_layering(module):
    for path in _files(module):
        bad = {name for name in _imports(path) for banned in FORBIDDEN[module] if name.startswith(banned)}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}, against DESIGN §0's directions"


@pytest.mark.parametrize("module", ["icrl_agent", "icrl_agent.stats", "icrl_agent.envs", "icrl_agent.baselines"])
def test_importing_the_light_modules_loads_no_network_agent_or_trainer(module):
    code = (
        f"import sys, {module}, gymnasium\n"
        "assert 'icrl/RiverSwim-v0' in gymnasium.registry\n"
        f"print(sorted(k for k in sys.modules if k in {HEAVY!r} or k.startswith('icrl_agent.pretraining')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_agent_and_wrapper_load_on_first_use():
    import icrl_agent
    from icrl_agent.agent import Agent
    from icrl_agent.wrappers import InContextWrapper

    assert icrl_agent.Agent is Agent and icrl_agent.InContextWrapper is InContextWrapper
    assert {"Agent", "InContextWrapper"} <= set(dir(icrl_agent))
    with pytest.raises(AttributeError, match="no attribute 'Agnet'"):
        icrl_agent.Agnet  # noqa: B018
