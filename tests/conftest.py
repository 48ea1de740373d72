"""Fixtures shared by test modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch


def load_script(path: Path) -> ModuleType:
    """Import a script that is not in a package (``tools/*.py``, ``tests/reference/*.py``) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def one_torch_thread():
    """The agent's tensors are tiny: one thread is several times faster than contended ones. A module opts in
    with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; the caller's setting is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
