"""One dataclass fixes a pretraining run (nanoGPT-style), nested where the parts are separate.

    PretrainConfig            run keys: seed, device, output folders, checkpoints, progress, init_from,
                              init_constants
      .model   ModelConfig    the network (icrl_agent.model)
      .prior   PriorSpec      the MDP families and their ranges (pretraining/prior.py)
      .data    DataSpec       how much data of which behaviour, DAgger, targets (pretraining/data.py)
      .stage1  Stage1Config   cross-entropy stage: optimizer, length, losses, held-out evaluation
      .scale   ScaleStageConfig  between the stages: the scale head alone, on a quantile (pinball) loss
      .es      ESConfig       stage 2: evolution strategies over the optimism parameters

Every key is documented next to its default and settable from YAML/JSON (``prior: {max_states: 24}``).
Unknown keys and out-of-range values fail at load time, naming the key with its section
(``prior.max_states``), before any work is done. Configs written before the sections existed (flat
keys, as in ``icrl_agent/weights/icrl-v1.json``) are refused with the new name of every moved key;
:func:`nest_flat_config` converts them (model cards and old checkpoints are read through it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from icrl_agent.model import ES_SCOPES, OPTIMISM_CONSTANTS, ModelConfig
from icrl_agent.pretraining.data import DataSpec
from icrl_agent.pretraining.prior import FAMILIES, PriorSpec, default_family_weights

ES_OPTIMIZERS = ("sgd", "adam")


@dataclass
class Stage1Config:
    """Stage 1: cross-entropy to Boltzmann(Q*) (the ``stage1:`` section)."""

    steps: int = 2000                  # optimizer steps; the CLI's --steps overrides it
    batch_size: int = 64               # MDPs per step (per process under torchrun)
    lr: float = 1e-3                   # AdamW learning rate (constant after warmup)
    warmup_steps: int = 50             # linear learning-rate warmup
    weight_decay: float = 0.0          # AdamW weight decay
    grad_clip: float = 1.0             # gradient-norm clip; 0 disables
    optimism: bool = False             # run the model with its optimism on during stage 1 (off: ES owns it)
    scale_loss_weight: float = 0.1     # weight of the reward-scale regression (log max|R| of the true MDP)
    eval_interval: int = 100           # steps between held-out evaluations (target accuracy)
    eval_batch_size: int = 64          # MDPs per held-out evaluation


@dataclass
class ScaleStageConfig:
    """The scale stage, between stage 1 and stage 2 (the ``scale:`` section): only the scale head's
    parameters move (the encoder is frozen and ``g`` detached), on the pinball loss at ``quantile`` of
    ``log(reward_scale) - log(true max |R|)`` over the MDPs whose data holds a nonzero reward."""

    steps: int = 0                     # optimizer steps; 0 skips the stage
    batch_size: int = 64               # fresh MDPs per step (per process under torchrun), uniform/epsilon data
    lr: float = 1e-3                   # Adam learning rate of the scale head (constant)
    quantile: float = 0.5              # target share of MDPs whose true max |R| is <= the estimate, in (0, 1);
                                       # with model.scale_head "quantile" also stage 1's pinball quantile
    eval_interval: int = 100           # steps between coverage evaluations (and at the stage's end)
    eval_batch_size: int = 64          # MDPs per family in a coverage evaluation (a fixed set per run)
    online_prob: float = 0.0           # share of each batch's MDPs whose data is the model's own online
                                       # episodes from empty statistics (what a user's agent has seen), not
                                       # uniform/epsilon data
    online_episodes: int = 16          # those MDPs get 1..online_episodes episodes (uniform)


@dataclass
class ESConfig:
    """Stage 2: evolution strategies over ``model.optimism_parameters()`` (the ``es:`` section)."""

    generations: int = 40              # 0 skips stage 2; the CLI's --es-generations overrides it
    pairs: int = 16                    # antithetic pairs per generation (population = 2 * pairs)
    sigma: float = 0.05                # perturbation scale
    lr: float = 0.05                   # step size on the normalized-fitness gradient estimate
    optimizer: str = "sgd"             # "sgd": theta += lr * gradient (its step grows like sqrt(pairs *
                                       # parameters): ~2.6 in L2 per generation at 12 pairs, 169 heads);
                                       # "adam": Adam on the same estimate, each parameter moves ~lr per
                                       # generation (the OpenAI-ES practice)
    mdps: int = 48                     # prior MDPs per generation (shared by the whole population)
    episodes: int = 40                 # online episodes per MDP
    max_horizon: int = 100             # horizon cap of the ES MDPs (the online loop is sequential in H)
    parameters: str = "constants"      # "constants" (the 4 optimism constants) or "heads" (also the last
                                       # layers of the (s, a) and scale heads: IcrlModel.es_parameters)
    min_episodes: int = 0              # > 0: each MDP's budget is log-uniform in [min_episodes, episodes]
    worst_fifth_weight: float = 0.0    # fitness = mean + this * mean of the worst fifth of the MDPs' scores
    noise_draws: int = 0               # at the end: the final parameters' fitness on this many fresh draws


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
    progress: bool = True              # tqdm progress bar (rank 0, and only when stderr is a terminal)
    init_from: str = ""                # "" (fresh init), a checkpoint (dir, stem or .safetensors of
                                       # save_checkpoint) or "shipped" (the default weights): every parameter whose name and
                                       # shape match is copied; see train.init_from_checkpoint
    init_constants: dict[str, float] = field(default_factory=dict)  # optimism constants set on a fresh start,
                                       # after init_from, in natural units: {bonus, unknown, kappa, scale_gain}
                                       # (IcrlModel.set_optimism_constants); stage 2 may move them further

    # --- the parts ---
    model: ModelConfig = field(default_factory=ModelConfig)  # the network (icrl_agent.model.ModelConfig)
    prior: PriorSpec = field(default_factory=PriorSpec)      # the MDP families and their ranges
    data: DataSpec = field(default_factory=DataSpec)         # data amounts, behaviours, DAgger, targets
    stage1: Stage1Config = field(default_factory=Stage1Config)  # cross-entropy stage
    scale: ScaleStageConfig = field(default_factory=ScaleStageConfig)  # the scale head alone (after stage 1)
    es: ESConfig = field(default_factory=ESConfig)           # stage 2 (evolution strategies)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able copy of every key, nested by section."""
        return asdict(self)

    @property
    def train_families(self) -> dict[str, float]:
        """Mixture weights of the families trained on (held-out ones removed)."""
        return self.prior.train_families


SECTIONS: dict[str, type] = {
    "model": ModelConfig, "prior": PriorSpec, "data": DataSpec, "stage1": Stage1Config,
    "scale": ScaleStageConfig, "es": ESConfig,
}

# --- flat (pre-section) keys and where they live now ---

_RENAMED = {"stage1_steps": "stage1.steps", "stage1_optimism": "stage1.optimism"}


def _flat_key_moves() -> dict[str, str]:
    moves = {name: f"prior.{name}" for name in (f.name for f in fields(PriorSpec))}
    moves.update({name: f"data.{name}" for name in (f.name for f in fields(DataSpec))})
    moves.update({name: f"stage1.{name}" for name in (f.name for f in fields(Stage1Config))
                  if name not in ("steps", "optimism")})
    moves.update({f"es_{name}": f"es.{name}" for name in (f.name for f in fields(ESConfig))})
    moves.update(_RENAMED)
    return moves


FLAT_KEY_MOVES: dict[str, str] = _flat_key_moves()


def nest_flat_config(values: dict[str, Any]) -> dict[str, Any]:
    """Convert a flat config mapping (written before the sections existed) to the nested layout.

    Keys already in the nested layout pass through, so this is safe on any config mapping.

    :param values: e.g. a model card's ``config`` (``{"max_states": 24, "es_pairs": 4, ...}``)
    :return: the same values nested by section (``{"prior": {"max_states": 24}, "es": {"pairs": 4}, ...}``)
    """
    nested: dict[str, Any] = {}
    for key, value in values.items():
        if key in FLAT_KEY_MOVES:
            section, name = FLAT_KEY_MOVES[key].split(".")
            nested.setdefault(section, {})[name] = value
        elif key in SECTIONS and isinstance(value, dict):
            nested.setdefault(key, {}).update(value)
        else:
            nested[key] = value
    return nested


# --- validation ---

_RULES: dict[str, tuple[str, ...]] = {
    "positive int": ("checkpoint_interval", "prior.max_states", "prior.max_actions", "prior.min_horizon",
                     "prior.max_horizon", "prior.arms_max_stay", "data.min_episodes", "data.dagger_episodes",
                     "stage1.batch_size", "stage1.eval_interval", "stage1.eval_batch_size", "scale.batch_size",
                     "scale.eval_interval", "scale.eval_batch_size", "scale.online_episodes", "es.pairs", "es.mdps",
                     "es.episodes", "es.max_horizon"),
    "non-negative int": ("seed", "data.max_episodes", "data.dagger_start", "stage1.warmup_steps",
                         "stage1.steps", "scale.steps", "es.generations", "es.min_episodes", "es.noise_draws",
                         "prior.max_corridor"),
    "probability": ("prior.negate_prob", "prior.stochastic_reward_prob", "prior.arms_rare_pays_prob",
                    "data.zero_data_prob", "data.epsilon_optimal_prob", "data.dagger_prob", "scale.online_prob"),
    "positive number": ("prior.reward_scale_min", "prior.reward_scale_max", "data.target_temperature",
                        "stage1.lr", "scale.lr", "es.sigma", "es.lr"),
    "non-negative number": ("stage1.weight_decay", "stage1.grad_clip", "stage1.scale_loss_weight",
                            "es.worst_fifth_weight", "prior.small_reward_ratio_min", "prior.small_reward_ratio_max"),
}
_EXPECTED = {"positive int": "an integer >= 1", "non-negative int": "an integer >= 0",
             "probability": "a probability in [0, 1]", "positive number": "a number > 0",
             "non-negative number": "a number >= 0"}


def _fail(key: str, value: Any, expected: str) -> None:
    raise ValueError(f"config key '{key}' = {value!r} is out of range: expected {expected}")


def _get(cfg: PretrainConfig, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _in_range(rule: str, value: Any) -> bool:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if rule == "positive int":
        return is_int and value >= 1
    if rule == "non-negative int":
        return is_int and value >= 0
    if rule == "probability":
        return is_number and 0.0 <= value <= 1.0
    if rule == "positive number":
        return is_number and value > 0
    return is_number and value >= 0


def validate(cfg: PretrainConfig) -> None:
    """Raise ``ValueError`` naming the first key (``section.key``) whose value is out of range."""
    for section, cls in SECTIONS.items():
        if not isinstance(getattr(cfg, section), cls):
            _fail(section, getattr(cfg, section), f"a {cls.__name__} (a mapping of its keys in a file)")
    for rule, keys in _RULES.items():
        for key in keys:
            if not _in_range(rule, _get(cfg, key)):
                _fail(key, _get(cfg, key), _EXPECTED[rule])
    _validate_ranges(cfg)
    _validate_families(cfg.prior)
    quantile = cfg.scale.quantile
    if not (isinstance(quantile, (int, float)) and not isinstance(quantile, bool) and 0.0 < quantile < 1.0):
        _fail("scale.quantile", quantile, "a number strictly between 0 and 1")
    _validate_init_constants(cfg)
    if not isinstance(cfg.init_from, str):
        _fail("init_from", cfg.init_from, "a checkpoint path, 'shipped', or '' (fresh init)")
    if not cfg.weights_name or "/" in cfg.weights_name:
        _fail("weights_name", cfg.weights_name, "a non-empty file name without '/'")
    if not (cfg.device == "cpu" or cfg.device.startswith("cuda")):
        _fail("device", cfg.device, "'cpu' or 'cuda[:N]'")


def _validate_init_constants(cfg: PretrainConfig) -> None:
    values = cfg.init_constants
    if not isinstance(values, dict):
        _fail("init_constants", values, f"a mapping of optimism constants ({', '.join(OPTIMISM_CONSTANTS)}) to numbers")
    for name, value in values.items():
        if name not in OPTIMISM_CONSTANTS:
            _fail(f"init_constants.{name}", value, f"a constant among {', '.join(OPTIMISM_CONSTANTS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            _fail(f"init_constants.{name}", value, "a number > 0")
    if values and cfg.model.head != "vi":
        _fail("init_constants", values, f"{{}} with model.head {cfg.model.head!r} (it has no optimism constants)")


def _validate_ranges(cfg: PretrainConfig) -> None:
    prior, data = cfg.prior, cfg.data
    if prior.min_states < 2 or prior.min_states > prior.max_states:
        _fail("prior.min_states", prior.min_states, f"2 <= min_states <= max_states ({prior.max_states})")
    if prior.max_states < 4:
        _fail("prior.max_states", prior.max_states, "an integer >= 4 (a 2x2 grid)")
    if prior.max_actions < 2:
        _fail("prior.max_actions", prior.max_actions, "an integer >= 2")
    if prior.min_horizon > prior.max_horizon:
        _fail("prior.min_horizon", prior.min_horizon, f"<= max_horizon ({prior.max_horizon})")
    if prior.reward_scale_min > prior.reward_scale_max:
        _fail("prior.reward_scale_min", prior.reward_scale_min, f"<= reward_scale_max ({prior.reward_scale_max})")
    if prior.small_reward_ratio_min > prior.small_reward_ratio_max or (
            prior.small_reward_ratio_max > 0 and not 0 < prior.small_reward_ratio_min <= 1):
        _fail("prior.small_reward_ratio_min", prior.small_reward_ratio_min,
              f"0 < small_reward_ratio_min <= small_reward_ratio_max ({prior.small_reward_ratio_max}), or both 0")
    if prior.max_corridor and not 4 <= prior.max_corridor <= prior.max_states:
        _fail("prior.max_corridor", prior.max_corridor, f"0 or 4 <= max_corridor <= max_states ({prior.max_states})")
    if not isinstance(prior.arms_hub_pays, bool):
        _fail("prior.arms_hub_pays", prior.arms_hub_pays, "true or false")
    if not 0 < prior.arms_min_enter < 0.5:
        _fail("prior.arms_min_enter", prior.arms_min_enter, "0 < arms_min_enter < 0.5")
    if cfg.es.min_episodes > cfg.es.episodes:
        _fail("es.min_episodes", cfg.es.min_episodes, f"<= es.episodes ({cfg.es.episodes})")
    if cfg.es.parameters not in ES_SCOPES:
        _fail("es.parameters", cfg.es.parameters, f"one of {', '.join(ES_SCOPES)}")
    if cfg.es.optimizer not in ES_OPTIMIZERS:
        _fail("es.optimizer", cfg.es.optimizer, f"one of {', '.join(ES_OPTIMIZERS)}")
    if data.min_episodes > max(data.max_episodes, 1):
        _fail("data.min_episodes", data.min_episodes, f"<= max_episodes ({data.max_episodes})")
    if data.epsilon_optimal_prob + data.dagger_prob > 1.0:
        _fail("data.dagger_prob", data.dagger_prob, "epsilon_optimal_prob + dagger_prob <= 1")


def _validate_families(prior: PriorSpec) -> None:
    if not isinstance(prior.family_weights, dict):
        _fail("prior.family_weights", prior.family_weights, "a mapping of family names to weights")
    for name, weight in prior.family_weights.items():
        if name not in FAMILIES:
            _fail(f"prior.family_weights.{name}", weight, f"a family among {', '.join(FAMILIES)}")
        if not isinstance(weight, (int, float)) or weight < 0:
            _fail(f"prior.family_weights.{name}", weight, "a weight >= 0")
    for name in prior.held_out:
        if name not in FAMILIES:
            _fail("prior.held_out", name, f"family names among {', '.join(FAMILIES)}")
    if not prior.train_families:
        _fail("prior.family_weights", prior.family_weights,
              "at least one family with weight > 0 that is not held out")


# --- building from a mapping ---

def _refuse_flat_keys(values: dict[str, Any]) -> None:
    moved = [key for key in values if key in FLAT_KEY_MOVES]
    if moved:
        where = ", ".join(f"{key} -> {FLAT_KEY_MOVES[key]}" for key in moved)
        raise ValueError(
            f"config keys now live in sections (model, prior, data, stage1, scale, es): {where}. "
            "Nest them as in configs/default.yaml (e.g. 'prior: {max_states: 24}'), or convert a flat "
            "mapping with icrl_agent.pretraining.config.nest_flat_config"
        )


def _section(name: str, values: Any) -> Any:
    cls = SECTIONS[name]
    if not isinstance(values, dict):
        _fail(name, values, f"a mapping of {cls.__name__} keys")
    known = sorted(f.name for f in fields(cls))
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown config key {name}.{unknown[0]}; known keys of '{name}': {', '.join(known)}")
    values = dict(values)
    if name == "prior" and isinstance(values.get("family_weights"), dict):
        # a partial mapping overrides the defaults family by family
        values["family_weights"] = {**default_family_weights(), **values["family_weights"]}
    try:
        return cls(**values)
    except ValueError as err:  # ModelConfig checks its own values
        raise ValueError(f"config key '{name}' is out of range: {err}") from err


def config_from_dict(values: dict[str, Any]) -> PretrainConfig:
    """Build a config from a (nested) mapping; unknown keys raise ``ValueError`` naming them.

    :param values: run keys of :class:`PretrainConfig` and its sections as mappings (missing keys keep
        their defaults); flat keys of the old layout are refused with their new names
    :return: the validated config
    """
    _refuse_flat_keys(values)
    known = sorted(f.name for f in fields(PretrainConfig))
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown config key {unknown[0]}; known keys: {', '.join(known)}")
    built = {key: _section(key, value) if key in SECTIONS else value for key, value in values.items()}
    return PretrainConfig(**built)


def flat_items(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"prior": {"max_states": 24}}`` -> ``{"prior.max_states": 24}`` (dict leaves of sections kept whole)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and not prefix and key in SECTIONS:
            out.update(flat_items(value, f"{key}."))
        else:
            out[prefix + key] = value
    return out


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
