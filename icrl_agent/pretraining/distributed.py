"""A few lines of ``torch.distributed`` around the training loop (nanoGPT-style), for ``torchrun``.

Launched by ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set), every process joins one group:
gloo on CPU, nccl on CUDA (one GPU per process, ``cuda:LOCAL_RANK``). Launched plainly, nothing is
initialized and the helpers below act as a world of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``, with a clear error when CUDA is asked for but absent.

    :param name: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``
    :return: the device
    """
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"--device {name} was requested but CUDA is not available (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda}); run with --device cpu, or install a CUDA build of torch "
            "on a machine with a GPU"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {name!r}")
    return device


def launched_by_torchrun() -> bool:
    """True when the environment variables of a ``torchrun`` launch are present."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device_name: str) -> DistInfo:
    """Join the process group when launched by ``torchrun``; pick this process's device.

    :param device_name: the requested device type (``"cpu"`` or ``"cuda"``)
    :return: rank, world size and device of this process
    """
    device = resolve_device(device_name)
    if not launched_by_torchrun():
        return DistInfo(device=device)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``tensor`` over all processes in place (a no-op in a world of one)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(info: DistInfo) -> None:
    """Wait for every process (a no-op in a world of one)."""
    if info.enabled:
        dist.barrier()


def teardown(info: DistInfo) -> None:
    """Leave the process group if this process joined one."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
