"""Pretraining throughput: MDPs/s of data generation, steps/s of each stage, and where the time goes.

    python -m icrl_agent.pretraining evaluate speed --config configs/default.yaml --device cpu
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from icrl_agent.pretraining.config import PretrainConfig, load_config
from icrl_agent.pretraining.data import SectionTimer, sample_training_batch
from icrl_agent.pretraining.distributed import DistInfo, resolve_device
from icrl_agent.pretraining.train import (
    RunState,
    Stage1Loss,
    build_model,
    derived_generator,
    es_generation,
    stage1_scale_quantile,
    stage1_step,
)


def _shares(timer: SectionTimer) -> dict[str, float]:
    total = sum(timer.seconds.values()) or 1.0
    return {k: round(v / total, 3) for k, v in sorted(timer.seconds.items())}


def _data_generation(cfg: PretrainConfig, device: torch.device, repeats: int) -> dict[str, Any]:
    timer = SectionTimer(device)
    batch_size = cfg.stage1.batch_size
    start = time.perf_counter()
    for i in range(repeats):
        g = derived_generator(cfg, device, "bench-data", i)
        sample_training_batch(batch_size, cfg.train_families, cfg.prior, cfg.data, g, device, timer=timer)
    elapsed = time.perf_counter() - start
    return {"mdps_per_s": repeats * batch_size / elapsed, "time_share": _shares(timer)}


def _stage1(cfg: PretrainConfig, device: torch.device, repeats: int, dagger: bool) -> dict[str, Any]:
    model = build_model(cfg, device)
    for p in model.optimism_parameters():
        p.requires_grad_(cfg.stage1.optimism)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.stage1.lr)
    loss_module = Stage1Loss(model, cfg.stage1.optimism, cfg.stage1.scale_loss_weight, stage1_scale_quantile(cfg))
    info, timer = DistInfo(device=device), SectionTimer(device)
    state = RunState(step=cfg.data.dagger_start if dagger else 0)
    cfg = replace(cfg, data=replace(cfg.data, dagger_prob=cfg.data.dagger_prob if dagger else 0.0))
    stage1_step(cfg, state, model, loss_module, optimizer, info, SectionTimer(device))  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        stage1_step(cfg, state, model, loss_module, optimizer, info, timer)
        state.step += 1
    elapsed = time.perf_counter() - start
    return {
        "steps_per_s": repeats / elapsed,
        "mdps_per_s": repeats * cfg.stage1.batch_size / elapsed,
        "time_share": _shares(timer),
    }


def _stage2(cfg: PretrainConfig, device: torch.device, repeats: int) -> dict[str, Any]:
    model = build_model(cfg, device).eval()
    if not model.optimism_parameters():
        return {"generations_per_s": None, "note": "the model has no optimism parameters (head != 'vi')"}
    state, info = RunState(), DistInfo(device=device)
    start = time.perf_counter()
    for _ in range(repeats):
        es_generation(cfg, state, model, info)
        state.generation += 1
    elapsed = time.perf_counter() - start
    episodes = 2 * cfg.es.pairs * cfg.es.mdps * cfg.es.episodes
    return {
        "generations_per_s": repeats / elapsed,
        "online_episodes_per_s": repeats * episodes / elapsed,
        "population": 2 * cfg.es.pairs,
        "mdps": cfg.es.mdps,
        "episodes": cfg.es.episodes,
    }


def run_pretrain_speed(device: str, config_path: str | None, repeats: int = 3) -> dict[str, Any]:
    """Measure pretraining throughput on ``device`` with a run config.

    :param device: ``"cpu"`` or ``"cuda"`` (a clear error when CUDA is missing)
    :param config_path: a pretraining config file; ``None`` uses the defaults of ``PretrainConfig``
        (the same as ``configs/default.yaml``)
    :param repeats: batches/steps/generations timed per measurement (after one warm-up step in stage 1)
    :return: ``{"device", "config", "torch_threads", "data_generation": {"mdps_per_s", "time_share"},
        "stage1_uniform" and "stage1_dagger": {"steps_per_s", "mdps_per_s", "time_share"},
        "stage2_es": {"generations_per_s", ...}}``; ``time_share`` is the fraction of time per section
        (prior sampling, exact solve, rollouts, DAgger rollouts, forward/backward)
    """
    cfg = PretrainConfig() if config_path is None else load_config(config_path)
    cfg = replace(cfg, device=device, progress=False, log_dir="")
    torch_device = resolve_device(device)
    return {
        "device": str(torch_device),
        "config": config_path or "PretrainConfig() defaults",
        "torch_threads": torch.get_num_threads(),
        "batch_size": cfg.stage1.batch_size,
        "data_generation": _data_generation(cfg, torch_device, repeats),
        "stage1_uniform": _stage1(cfg, torch_device, repeats, dagger=False),
        "stage1_dagger": _stage1(cfg, torch_device, repeats, dagger=True),
        "stage2_es": _stage2(cfg, torch_device, max(1, repeats // 3)),
    }
