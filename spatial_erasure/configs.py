"""The trainers' settings as typed, frozen records: what the methods (esd.py, grid_erasure.py) read.

    cfg = esd.parse_args(argv)                            # the command line, checked: EsdConfig.of(flags)
    cfg = cfg.resolved("esd", family)                     # the model family's lr and eta (recipes.resolve)
    cfg.settings()                                        # {field: value}: what the erasure file records
    esd.main(cfg)                                         # trains; grid_erasure: GridConfig, the same way

The flags themselves (their defaults, help and checks) are the scripts' parsers (training_flags,
esd.parse_args, grid_erasure.parse_args); a config has no defaults of its own, so the two cannot
drift apart: `of` refuses settings with one the config lacks or without one it has
(tests/test_config.py checks both parsers). The trainers' parse_args return these records and their
`main` takes one: no function of the library takes an argparse namespace below a script's `main`.
"""
from dataclasses import asdict, dataclass, fields, replace

from .recipes import resolve


@dataclass(frozen=True)
class TrainingConfig:
    """What both trainers share: the model, the recipe and target, the loop, x_t, preservation,
    robustness, the runtime and the output."""
    base_model: str
    recipe: str
    target: str
    null_weight: float
    train_method: str
    iterations: int
    lr: float | None                      # None until the model family is known (resolved)
    negative_guidance: float | None
    num_inference_steps: int
    guidance_scale: float
    batch_size: int
    resolution: int | None
    seed: int
    xt_source: str
    bank_size: int
    stream_width: int
    preserve: int
    preserve_weight: float
    preserve_kv: float
    robust: bool
    robust_every: int
    robust_steps: int
    robust_tokens: int
    robust_weight: float
    checkpoint_every: int
    resume: bool
    restart: bool
    overwrite: bool
    device: str | None
    mixed_precision: str
    gradient_checkpointing: bool
    channels_last: bool
    compile: bool
    teacher: str
    output: str | None
    config: str | None
    print_config: bool

    @classmethod
    def of(cls, settings):
        """The config of {setting: value} (a parser's vars(args)): exactly this config's fields."""
        names = {f.name for f in fields(cls)}
        extra, missing = sorted(set(settings) - names), sorted(names - set(settings))
        if extra or missing:
            raise TypeError(f"{cls.__name__}: settings {extra} are not fields, fields {missing} are not set")
        return cls(**settings)

    def settings(self):
        """{field: value}, every field."""
        return asdict(self)

    def resolved(self, trainer, family):
        """The same config with what the recipe leaves to the model family filled in (recipes.resolve)."""
        settings = self.settings()
        resolve(settings, trainer, family)
        return replace(self, **settings)


@dataclass(frozen=True)
class EsdConfig(TrainingConfig):
    """ESD (spatial_erasure.esd): the concept, what it is erased from, prompt variations, the twin map."""
    erase_concept: str
    erase_from: str | None
    variations: int | None
    twin_map: bool | None
    twin_map_keep: float
    preserve_xt: str


@dataclass(frozen=True)
class GridConfig(TrainingConfig):
    """Grid erasure (spatial_erasure.grid_erasure): the preset, the concept's variations, the masks,
    the outside and retain terms."""
    preset: str
    concept: str
    num_prompts: int
    grid: int
    center: bool
    global_share: float
    direction: str
    outside_weight: float | None
    retain_weight: float | None
    retain_templates: int | None          # None until the model family is known (resolved)
    retain_region: str
    retain_xt: str
    retain_bank_size: int
