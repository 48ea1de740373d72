"""Statistics, tables and plots of benchmark results: no environment or agent code here."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

NOT_REACHED = "not reached"


def normalize(returns: Sequence[float] | np.ndarray, optimal: float, random: float) -> np.ndarray:
    """Normalized returns ``(R - R_random) / (R_opt - R_random)``: 0 for the random policy, 1 for the optimum.

    :param returns: undiscounted episode returns
    :param optimal: the optimal expected return of an episode
    :param random: the uniformly random policy's expected return of an episode
    :return: float64 array of normalized returns
    """
    gap = optimal - random
    if not gap > 1e-12:
        raise ValueError(
            f"cannot normalize: the optimal return {optimal} does not exceed the random return {random}; "
            "this env cannot separate agents"
        )
    return (np.asarray(returns, dtype=np.float64) - random) / gap


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_resamples: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean.

    :param values: one value per seed
    :param n_resamples: bootstrap resamples
    :param level: confidence level
    :param seed: seed of the resampling
    :return: ``(low, high)``; both equal the value when there is only one
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha)))


def bootstrap_band(
    curves: np.ndarray, n_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise bootstrap CI of the mean curve over seeds.

    :param curves: ``[n_seeds, n_points]``
    :param n_resamples: bootstrap resamples
    :param level: confidence level
    :param seed: seed of the resampling
    :return: ``(low, high)`` arrays of length ``n_points``
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, curves.shape[0], size=(n_resamples, curves.shape[0]))
    means = curves[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return np.quantile(means, alpha, axis=0), np.quantile(means, 1.0 - alpha, axis=0)


def moving_average(values: Sequence[float] | np.ndarray, window: int = 10) -> np.ndarray:
    """Trailing moving average; the first ``window - 1`` points average what exists so far.

    :param values: a sequence of numbers
    :param window: window length
    :return: float64 array of the same length
    """
    values = np.asarray(values, dtype=np.float64)
    cumsum = np.concatenate([[0.0], np.cumsum(values)])
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(0, ends - window)
    return (cumsum[ends] - cumsum[starts]) / (ends - starts)


def episodes_to_reach(
    normalized: Sequence[float] | np.ndarray, threshold: float = 0.9, window: int = 10
) -> int | None:
    """First episode (1-based) at which the ``window``-episode moving average reaches ``threshold``.

    Only full windows count, so at least ``window`` episodes are needed.

    :param normalized: normalized returns of one run, in order
    :param threshold: the level to reach
    :param window: moving-average window
    :return: the episode number, or ``None`` if never reached
    """
    avg = moving_average(normalized, window)[window - 1 :]
    hits = np.flatnonzero(avg >= threshold - 1e-12)
    return int(hits[0]) + window if hits.size else None


def median_episodes(values: Sequence[int | None]) -> float | None:
    """Median over seeds of episodes-to-reach, counting "not reached" as infinite.

    :param values: per-seed episode numbers or ``None``
    :return: the median, or ``None`` if the median seed did not reach
    """
    if not values:
        return None
    med = float(np.median([math.inf if v is None else v for v in values]))
    return None if math.isinf(med) else med


def format_ci(mean: float, low: float, high: float) -> str:
    """``"0.83 [0.79, 0.87]"``."""
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table.

    :param header: column titles
    :param rows: cells, converted with ``str``
    :return: the table, one line per row
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str, data: Any) -> None:
    """Write ``data`` as indented JSON (NaN/inf written as null), creating parent folders."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(_json_safe(data), f, indent=1)
        f.write("\n")


def _json_safe(data: Any) -> Any:
    if isinstance(data, dict):
        return {str(k): _json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_json_safe(v) for v in data]
    if isinstance(data, np.ndarray):
        return _json_safe(data.tolist())
    if isinstance(data, np.integer):
        return int(data)
    if isinstance(data, float | np.floating):
        return None if not math.isfinite(float(data)) else float(data)
    return data


def write_csv(path: str, rows: Sequence[dict[str, Any]]) -> None:
    """Write dict rows as CSV (columns: the union of keys in first-seen order), creating parent folders."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(
    path: str, title: str, curves: dict[str, np.ndarray], ylabel: str = "normalized return", window: int = 10
) -> None:
    """One PNG of learning curves: per agent the moving-averaged mean over seeds with a 95% bootstrap band.

    :param path: the PNG to write
    :param title: the figure title
    :param curves: agent name -> ``[n_seeds, n_episodes]`` normalized (or raw) returns
    :param ylabel: the y-axis label (say whether returns are normalized; the 0 and 1 lines are drawn only then)
    :param window: moving-average window applied to each seed's curve first
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, runs in curves.items():
        smooth = np.stack([moving_average(run, window) for run in runs])
        episodes = np.arange(1, smooth.shape[1] + 1)
        low, high = bootstrap_band(smooth)
        ax.plot(episodes, smooth.mean(axis=0), label=name)
        ax.fill_between(episodes, low, high, alpha=0.2)
    if ylabel.startswith("normalized"):
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.axhline(0.0, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("episode")
    ax.set_ylabel(f"{ylabel} ({window}-episode mean)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bars(
    path: str,
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[tuple[float, float, float]]],
    ylabel: str = "normalized return (1 = optimal, 0 = random)",
) -> None:
    """Grouped bar chart of means with 95% CI error bars.

    :param path: the PNG to write
    :param title: the figure title
    :param groups: labels on the x axis (e.g. env names)
    :param series: bar label (e.g. agent) -> one ``(mean, low, high)`` per group (NaN for missing)
    :param ylabel: the y-axis label
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.4, 2.0 + 0.12 * len(groups) * len(series))), 4.2))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (name, stats) in enumerate(series.items()):
        mean = np.array([s[0] for s in stats], dtype=float)
        err = np.array([[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]], dtype=float)
        ax.bar(x + i * width - 0.4 + width / 2, mean, width, yerr=err, label=name, capsize=1.5)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=35, ha="right", fontsize="small")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
