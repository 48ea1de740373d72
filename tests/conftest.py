"""Fixtures shared by test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """The agent's tensors are tiny: one thread is several times faster than contended ones. A module opts in
    with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; the caller's setting is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
