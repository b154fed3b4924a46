"""What a training run is: its configuration, and where a process sits among the run's processes.

A :class:`TrainConfig` holds everything that defines a run; it is stored in the run
folder and with every snapshot. A few fields only say how the run is carried out
(``RUN_SETTINGS``: its length, how often it logs and saves, how many states it
keeps, data workers, TF32): those may change when a run continues, the others may
not, since a run continued with another learning rate or batch is another run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from cgsgan.config import PRESETS, DiscriminatorConfig

G_PRECISIONS = ("float32", "bfloat16")  # the generator's arithmetic in training
SEED_LIMIT = 2**32  # seeds are 32-bit, as the reference's (numpy) seeds

# Fields that may differ between a run folder's stored config and the one continuing it.
BACKGROUNDS = ("random", "white")  # what fakes and reals are composited over in training
RUN_SETTINGS = frozenset(
    {
        "kimg",
        "tick_kimg",
        "snapshot_ticks",
        "image_ticks",
        "metrics",
        "keep",
        "workers",
        "tf32",
        "max_bad_steps",
        "g_precision",
    }
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run is defined by; saved with every snapshot. Defaults follow the reference."""

    preset: str = "tiny64"
    revision: str = "v2"
    data: str | None = None  # None: the built-in synthetic heads at the preset's resolution
    distribution: str | None = None
    xflip: bool = True
    batch: int = 8  # over all processes
    batch_gpu: int | None = None  # per process and pass (gradient accumulation); None: batch / processes
    kimg: float = 15000.0  # length of training, in thousands of real images shown (the reference: 15,000)
    lr_g: float = 0.0025
    lr_d: float = 0.002
    xyz_lr_scale: float = 0.01  # v2: every "xyz" parameter at 0.01x lr (v1: 1)
    betas: tuple[float, float] = (0.0, 0.99)
    gamma: float = 1.0  # R1 weight
    r1_interval: int = 16
    views: int = 4  # multi-view regularisation; 1 renders each scene at its own camera only
    knn_k: int = 64
    knn_weight: float = 20.0
    center_weight: float = 1.0
    blur_sigma: float = 10.0  # 0 turns the D-input blur off (a fine-tuning run, as the reference's --resume)
    blur_fade_kimg: float = 200.0  # at batch 32; scaled with the batch as in the reference
    ema_kimg: float = 10.0  # at batch 32; scaled with the batch
    ema_rampup: float | None = 0.05  # None when fine-tuning imported weights, as the reference's --resume
    clip_g: float = 20.0
    clip_d: float = 5.0
    tick_kimg: float = 1.0
    snapshot_ticks: int = 500  # network snapshots, the reference's --network_snap
    image_ticks: int = 50  # image grids, the reference's --img_snap
    keep: int = 2  # training states kept (of the newest snapshots); every network file stays
    seed: int = 0
    max_bad_steps: int = 10
    metrics: tuple[str, ...] = ()  # evaluated on G_ema at every snapshot (official presets: fid20k_full)
    workers: int | None = None  # DataLoader processes; None: 3 on CUDA (the reference), 0 on a CPU
    tf32: bool = False  # TF32 matmuls and convolutions on CUDA; off in the reference
    g_precision: str = "float32"  # the generator under autocast: "bfloat16" (float32 in the reference)
    background: str = "random"  # fakes and reals over random colours (the paper); "white": the ablation without
    d_channel_base: int | None = None  # D channels per block: min(base / resolution, max); None: the preset's
    d_channel_max: int | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.batch < 4 or self.batch % 4:
            raise ValueError(f"batch must be a multiple of 4 (the minibatch-std group), got {self.batch}")
        if self.batch_gpu is not None and (self.batch_gpu < 4 or self.batch_gpu % 4 or self.batch % self.batch_gpu):
            raise ValueError(f"batch_gpu must be a multiple of 4 that divides the batch ({self.batch}), "
                             f"got {self.batch_gpu}")  # fmt: skip
        if not 1 <= self.views:
            raise ValueError(f"views must be >= 1, got {self.views}")
        if self.views > (self.batch_gpu or self.batch):
            raise ValueError(f"views ({self.views}) cannot exceed the batch per pass ({self.batch_gpu or self.batch})")
        if self.r1_interval < 1 or self.max_bad_steps < 1:
            raise ValueError("r1_interval and max_bad_steps must be >= 1")
        if not 0 <= self.seed < SEED_LIMIT:
            raise ValueError(f"seed must be in 0..{SEED_LIMIT - 1}, got {self.seed}")
        if self.keep < 1 or self.snapshot_ticks < 1 or self.image_ticks < 1:
            raise ValueError("keep, snapshot_ticks and image_ticks must be >= 1")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.g_precision not in G_PRECISIONS:
            raise ValueError(f"g_precision must be one of {', '.join(G_PRECISIONS)}, got {self.g_precision!r} "
                             "(float16 would need loss scaling; bfloat16 has float32's range)")  # fmt: skip
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")
        resolution = PRESETS[self.preset].generator.resolution
        if self.d_channel_base is not None and self.d_channel_base < resolution:
            raise ValueError(f"d_channel_base must be >= the resolution ({resolution}) for D's first block to have "
                             f"channels, got {self.d_channel_base}")  # fmt: skip
        if self.d_channel_max is not None and self.d_channel_max < 1:
            raise ValueError(f"d_channel_max must be >= 1, got {self.d_channel_max}")
        if self.metrics:
            from cgsgan.metrics.evaluate import parse_metrics

            parse_metrics(list(self.metrics))

    def discriminator_config(self) -> DiscriminatorConfig:
        """The preset's discriminator, with this run's capacity where it sets one."""
        d_cfg = PRESETS[self.preset].discriminator_config()
        base, cmax = self.d_channel_base or d_cfg.channel_base, self.d_channel_max or d_cfg.channel_max
        return replace(d_cfg, channel_base=base, channel_max=cmax)

    @classmethod
    def for_preset(cls, preset: str, **overrides) -> TrainConfig:
        """The reference defaults, then the preset's own (CPU presets train shorter), then ``overrides``.

        Overrides that are None are ignored, so command-line options left unset keep the defaults."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        values = {**PRESETS[preset].training, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(preset=preset, **values)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A stored config; fields it lacks (stored by an older version) take the preset's defaults."""
        known = {f.name for f in fields(cls)}
        preset = PRESETS.get(values.get("preset", cls.preset))
        values = {**(preset.training if preset else {}), **values}
        values = {k: tuple(v) if k in ("betas", "metrics") else v for k, v in values.items() if k in known}
        return cls(**values)

    def differences(self, other: TrainConfig) -> dict[str, tuple]:
        """{field: (ours, theirs)} for every field that differs."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}

    def fine_tuning(self, blur: bool = False) -> TrainConfig:
        """The config for training on from imported weights, as the reference's ``--resume``: no EMA ramp-up (it
        would overwrite the imported G_ema), and no D-input blur unless ``blur``."""
        return replace(self, ema_rampup=None, blur_sigma=self.blur_sigma if blur else 0.0)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many non-finite steps in a row, or a run folder that disagrees)."""
