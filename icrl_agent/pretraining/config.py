"""One dataclass fixes a pretraining run (nanoGPT-style): defaults visible at a glance, loaded from YAML/JSON.

Every key is documented next to its default. Unknown keys and out-of-range values fail at load time,
naming the key, before any work is done.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from icrl_agent.pretraining.prior import FAMILIES


def _default_family_weights() -> dict[str, float]:
    return {
        "garnet": 3.0, "grid": 3.0, "river": 2.0, "bandit": 1.0, "tree": 1.0,
        "distractor": 2.0, "step_cost": 2.0, "loop": 1.0,
    }


@dataclass
class PretrainConfig:
    """Everything that fixes a pretraining run. A seed fixes it bit-for-bit on one device."""

    # --- run ---
    seed: int = 0                      # seeds the model init, the prior and the rollouts
    device: str = "cpu"                # "cpu" or "cuda" (or "cuda:N"); the CLI's --device overrides it
    amp: bool = True                   # bfloat16 autocast in stage 1, CUDA only (ignored on CPU)
    out_dir: str = "runs/pretrain"     # final weights: <out_dir>/<weights_name>.safetensors + .json
    weights_name: str = "icrl_pretrained"
    log_dir: str = "runs/pretrain/tb"  # TensorBoard event files; "" disables TensorBoard
    checkpoint_dir: str = "runs/pretrain/checkpoints"  # resumable state (last.safetensors + last.json)
    checkpoint_interval: int = 200     # stage-1 steps (and stage-2 generations) between resumable checkpoints
    progress: bool = True              # tqdm progress bar (rank 0 only)

    # --- model (forwarded to icrl_agent.model.ModelConfig) ---
    model: dict[str, Any] = field(
        default_factory=lambda: {"d_model": 64, "n_heads": 4, "n_rounds": 6, "head": "vi"}
    )

    # --- prior (see prior.py for each family's parameters) ---
    family_weights: dict[str, float] = field(default_factory=_default_family_weights)  # mixture weights
    held_out: list[str] = field(default_factory=lambda: ["tree", "loop"])  # never trained on; reported
    min_states: int = 2                # smallest number of states of a sampled MDP
    max_states: int = 64               # largest number of states (grids and trees stay under it)
    max_actions: int = 8               # largest number of actions
    min_horizon: int = 10              # episode length range (log-uniform, raised where a goal needs it)
    max_horizon: int = 200
    reward_scale_min: float = 0.01     # rewards are multiplied by a log-uniform scale over this range
    reward_scale_max: float = 100.0
    negate_prob: float = 0.1           # probability that an MDP's rewards all change sign

    # --- data (rollouts feeding the statistics) ---
    max_episodes: int = 64             # episodes of data per MDP: log-uniform over 0..max_episodes
    zero_data_prob: float = 0.1        # probability of an MDP with no data at all (the first step of an agent)
    epsilon_optimal_prob: float = 0.3  # share of MDPs whose behaviour is epsilon-greedy around Q* (else uniform)
    dagger_prob: float = 0.3           # share of MDPs whose data ends with the model's own episodes (DAgger)
    dagger_start: int = 200            # stage-1 step from which DAgger rollouts are mixed in
    dagger_episodes: int = 8           # the model's own episodes appended (at most) per DAgger MDP
    target_temperature: float = 0.1    # Boltzmann target temperature, times each state's Q range

    # --- stage 1: cross-entropy to Boltzmann(Q*) ---
    batch_size: int = 64               # MDPs per step (per process under torchrun)
    lr: float = 1e-3                   # Adam learning rate (constant after warmup)
    warmup_steps: int = 50             # linear learning-rate warmup
    weight_decay: float = 0.0          # Adam(W) weight decay
    grad_clip: float = 1.0             # gradient-norm clip; 0 disables
    stage1_steps: int = 2000           # optimizer steps; the CLI's --steps overrides it
    stage1_optimism: bool = False      # run the model with its optimism on during stage 1 (off: ES owns it)
    scale_loss_weight: float = 0.1     # weight of the reward-scale regression (log max|R| of the true MDP)
    eval_interval: int = 100           # steps between held-out evaluations (target accuracy)
    eval_batch_size: int = 64          # MDPs per held-out evaluation

    # --- stage 2: evolution strategies over model.optimism_parameters() ---
    es_generations: int = 40           # 0 skips stage 2
    es_pairs: int = 16                 # antithetic pairs per generation (population = 2 * es_pairs)
    es_sigma: float = 0.05             # perturbation scale
    es_lr: float = 0.05                # step size on the normalized-fitness gradient estimate
    es_mdps: int = 48                  # prior MDPs per generation (shared by the whole population)
    es_episodes: int = 40              # online episodes per MDP
    es_max_horizon: int = 100          # horizon cap of the ES MDPs (the online loop is sequential in H)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able copy of every key."""
        return asdict(self)

    @property
    def train_families(self) -> dict[str, float]:
        """Mixture weights of the families trained on (held-out ones removed)."""
        return {k: w for k, w in self.family_weights.items() if k not in self.held_out and w > 0}


_POSITIVE_INT = ("checkpoint_interval", "max_states", "max_actions", "min_horizon", "max_horizon",
                 "batch_size", "eval_interval", "eval_batch_size", "es_pairs", "es_mdps", "es_episodes",
                 "es_max_horizon", "dagger_episodes")
_NON_NEGATIVE_INT = ("seed", "max_episodes", "dagger_start", "warmup_steps", "stage1_steps", "es_generations")
_PROBABILITIES = ("negate_prob", "zero_data_prob", "epsilon_optimal_prob", "dagger_prob")
_POSITIVE_FLOAT = ("reward_scale_min", "reward_scale_max", "target_temperature", "lr", "es_sigma", "es_lr")


def _fail(key: str, value: Any, expected: str) -> None:
    raise ValueError(f"config key '{key}' = {value!r} is out of range: expected {expected}")


def validate(cfg: PretrainConfig) -> None:
    """Raise ``ValueError`` naming the first key whose value is out of range."""
    for key in _POSITIVE_INT:
        value = getattr(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            _fail(key, value, "an integer >= 1")
    for key in _NON_NEGATIVE_INT:
        value = getattr(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            _fail(key, value, "an integer >= 0")
    for key in _PROBABILITIES:
        value = getattr(cfg, key)
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            _fail(key, value, "a probability in [0, 1]")
    for key in _POSITIVE_FLOAT:
        value = getattr(cfg, key)
        if not isinstance(value, (int, float)) or not value > 0:
            _fail(key, value, "a number > 0")
    for key in ("weight_decay", "grad_clip", "scale_loss_weight"):
        if not isinstance(getattr(cfg, key), (int, float)) or getattr(cfg, key) < 0:
            _fail(key, getattr(cfg, key), "a number >= 0")
    _validate_ranges(cfg)
    _validate_families(cfg)
    _validate_model(cfg.model)
    if not cfg.weights_name or "/" in cfg.weights_name:
        _fail("weights_name", cfg.weights_name, "a non-empty file name without '/'")


def _validate_model(model: Any) -> None:
    from icrl_agent.model import ModelConfig

    if not isinstance(model, dict):
        _fail("model", model, "a mapping of icrl_agent.model.ModelConfig keys")
    known = {f.name for f in fields(ModelConfig)}
    for key in sorted(set(model) - known):
        raise ValueError(f"unknown config key 'model.{key}' (ModelConfig keys: {', '.join(sorted(known))})")
    try:
        ModelConfig(**model)
    except ValueError as err:
        raise ValueError(f"config key 'model' is out of range: {err}") from err


def _validate_ranges(cfg: PretrainConfig) -> None:
    if cfg.min_states < 2 or cfg.min_states > cfg.max_states:
        _fail("min_states", cfg.min_states, f"2 <= min_states <= max_states ({cfg.max_states})")
    if cfg.max_states < 4:
        _fail("max_states", cfg.max_states, "an integer >= 4 (a 2x2 grid)")
    if cfg.max_actions < 2:
        _fail("max_actions", cfg.max_actions, "an integer >= 2")
    if cfg.min_horizon > cfg.max_horizon:
        _fail("min_horizon", cfg.min_horizon, f"<= max_horizon ({cfg.max_horizon})")
    if cfg.reward_scale_min > cfg.reward_scale_max:
        _fail("reward_scale_min", cfg.reward_scale_min, f"<= reward_scale_max ({cfg.reward_scale_max})")
    if cfg.epsilon_optimal_prob + cfg.dagger_prob > 1.0:
        _fail("dagger_prob", cfg.dagger_prob, "epsilon_optimal_prob + dagger_prob <= 1")
    if not (cfg.device == "cpu" or cfg.device.startswith("cuda")):
        _fail("device", cfg.device, "'cpu' or 'cuda[:N]'")


def _validate_families(cfg: PretrainConfig) -> None:
    for name, weight in cfg.family_weights.items():
        if name not in FAMILIES:
            _fail(f"family_weights.{name}", weight, f"a family among {', '.join(FAMILIES)}")
        if not isinstance(weight, (int, float)) or weight < 0:
            _fail(f"family_weights.{name}", weight, "a weight >= 0")
    for name in cfg.held_out:
        if name not in FAMILIES:
            _fail("held_out", name, f"family names among {', '.join(FAMILIES)}")
    if not cfg.train_families:
        _fail("family_weights", cfg.family_weights, "at least one family with weight > 0 that is not held out")


def config_from_dict(values: dict[str, Any]) -> PretrainConfig:
    """Build a config from a mapping; unknown keys raise ``ValueError`` naming them.

    :param values: keys of :class:`PretrainConfig` (missing keys keep their defaults)
    :return: the validated config
    """
    known = {f.name for f in fields(PretrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(unknown)} (known keys: {', '.join(sorted(known))})")
    values = dict(values)
    if "family_weights" in values:  # a partial mapping overrides the defaults family by family
        values["family_weights"] = {**_default_family_weights(), **(values["family_weights"] or {})}
    return PretrainConfig(**values)


def load_config(path: str | Path) -> PretrainConfig:
    """Load a config from a ``.yaml``/``.yml`` or ``.json`` file.

    :param path: the config file
    :return: the validated config
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text) or {}
    elif path.suffix == ".json":
        values = json.loads(text)
    else:
        raise ValueError(f"config file {path} must end in .yaml, .yml or .json")
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of keys to values")
    return config_from_dict(values)
