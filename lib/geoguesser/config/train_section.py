"""The `train` section: the network, the fit and its hardware, every setting with its default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from geoguesser.config.base import (
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Section,
    absolute_path,
)
from geoguesser.config.checks import backbone_problem
from geoguesser.config.choices import (
    CENTROID_KINDS,
    DECODINGS,
    FUSIONS,
    NO_TRAIN_SHAPE,
    OBJECTIVES,
    PRECISIONS,
    STRATEGIES,
    STRATEGY_PROBLEMS,
    TTAS,
)


class TrainSettings(Section):
    objective: Literal[OBJECTIVES] = Field(
        "classification",
        description="cells with cross-entropy; normalized x/y with MSE; hybrid: cells plus"
        " each cell's offset from its centroid (km), decoded as centroid + offset; or"
        " contrastive: image and location embeddings (InfoNCE), decoded from a gallery",
    )
    location_sigmas_km: list[PositiveFloat] = Field(
        [2.0, 8.0, 32.0, 128.0],
        min_length=1,
        description="contrastive: the scales (km) of the location encoder's random Fourier"
        " features, from a village to a region of Croatia",
    )
    location_frequencies: PositiveInt = Field(
        64, description="contrastive: random Fourier frequencies per scale"
    )
    embedding_dim: PositiveInt = Field(
        128, description="contrastive: size of the shared image/location embedding"
    )
    contrastive_negatives: NonNegativeInt = Field(
        1024,
        description="contrastive: gallery points drawn per step as candidates besides the"
        " batch's own locations (1024 put one about every 7 km over Croatia)",
    )
    gallery_land_points: NonNegativeInt = Field(
        4096,
        description="contrastive: points drawn uniformly over the land, added to the training"
        " locations in the gallery the model ranks",
    )
    gallery_top_k: PositiveInt = Field(
        16,
        description="contrastive: the most similar gallery points whose similarity-weighted"
        " mean (projected plane) is the guess",
    )
    tta: Literal[TTAS] = Field(
        "none",
        description="test-time augmentation at validation, test and predict: none, or mirror"
        " (each location also seen mirrored, east and west swapped; the answers averaged)",
    )
    offset_weight: PositiveFloat = Field(
        1.0, description="hybrid: weight of the offset loss (smooth L1 in cell sides) vs the cells'"
    )
    backbone: str = Field(
        "resnext101_32x8d", description="torchvision model name, timm/<name>, or tinycnn"
    )
    weights: str | None = Field(
        None, description="null (random), imagenet (download), or a local state-dict file"
    )
    fusion: Literal[FUSIONS] = Field(
        "concat",
        description="how the views combine: concat (all four needed), mean, or attention"
        " (learned weights); mean and attention answer from 1 to 4 views",
    )
    view_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="chance of hiding each view of a training location (one always stays),"
        " to learn to answer from fewer; needs fusion mean or attention",
    )
    image_size: PositiveInt = Field(224, description="views are resized to this many pixels")
    view_rows: tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]] = (
        Field(
            (0.0, 1.0),
            description="the band of each view the backbone sees, from top to bottom as"
            " fractions of its height: [0.3, 0.8] keeps the horizon, without sky and road",
        )
    )
    normalization: Literal["weights", "imagenet", "train"] = Field(
        "weights",
        description="channel statistics: those the backbone's pretrained weights expect (timm's"
        " pretrained config, torchvision's weights transforms; ImageNet's for tinycnn),"
        " ImageNet's, or the training split's",
    )
    mean: list[Annotated[float, Field(ge=0, le=1)]] | None = Field(
        None,
        min_length=3,
        max_length=3,
        description="explicit channel mean in [0, 1] (with `std`), e.g. for a local weights"
        " file trained with other statistics; overrides `normalization`",
    )
    std: list[PositiveFloat] | None = Field(
        None, min_length=3, max_length=3, description="explicit channel std (with `mean`)"
    )
    batch_size: PositiveInt = Field(32, description="locations per batch (x4 views)")
    num_workers: NonNegativeInt = Field(4, description="JPEG decoding processes without a cache")
    augment: bool = Field(True, description="mirror scenes, jitter brightness and contrast")
    image_cache_dir: Path | None = Field(
        None, description="decoded-views cache reused across epochs and runs; null: none"
    )
    feature_cache: bool = Field(True, description="reuse frozen backbone features after epoch 1")
    head_dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the linear head")
    optimizer: Literal["adam", "adamw"] = Field("adam", description="the optimizer")
    lr: PositiveFloat = Field(1e-3, description="learning rate of the head")
    backbone_lr: PositiveFloat = Field(1e-4, description="learning rate of the unfrozen backbone")
    weight_decay: float = Field(0.0, ge=0, description="weight decay")
    scheduler: Literal["plateau", "onecycle", "cosine", "none"] = Field(
        "plateau", description="learning-rate schedule"
    )
    plateau_patience: NonNegativeInt = Field(2, description="epochs without progress before a cut")
    plateau_factor: float = Field(0.1, gt=0, lt=1, description="the cut's factor")
    freeze_epochs: NonNegativeInt = Field(1, description="epochs training the head only")
    unfreeze_blocks: PositiveInt | None = Field(
        None, description="unfreeze only the last N backbone stages; null: all"
    )
    max_epochs: PositiveInt = Field(10, description="epochs in all")
    lr_find: Literal["off", "show", "use"] = Field(
        "off",
        description="Lightning's learning-rate finder before the fit: off; show (record its"
        " curve and suggestion, train with `lr`); use (train with the suggestion). YAML's"
        " true/false mean show/off",
    )
    lr_find_steps: PositiveInt = Field(100, description="learning rates the finder tries")
    tau_km: PositiveFloat | None = Field(
        None,
        description="haversine label smoothing scale (km); null: hard labels (configs/sample"
        ".yaml: 65, by cross-validation on real photographs)",
    )
    hierarchy: NonNegativeInt = Field(
        0,
        description="cross-entropy also on this many coarser levels of the cells (square cells:"
        " 2x2, 4x4, ... blocks; other kinds: their parent_1, parent_2, ... groups), each"
        " level's probabilities summed from the cells'; fewer where the levels reach one group;"
        " 0: off. Decoding stays at the cells",
    )
    hierarchy_weight: PositiveFloat = Field(
        1.0,
        description="hierarchy: weight of the levels' mean cross-entropy vs the cells' own",
    )
    retrieval: bool = Field(
        False,
        description="refine the guess by the nearest training locations in embedding space"
        " among the top cells (classification, hybrid); the checkpoint carries them",
    )
    retrieval_cells: PositiveInt = Field(5, description="retrieval: the top cells searched")
    retrieval_neighbors: PositiveInt = Field(
        8, description="retrieval: nearest training locations averaged (projected plane)"
    )
    decode: Literal[DECODINGS] = Field(
        "mean", description="probability-weighted mean of centroids, or the likeliest cell"
    )
    centroid_kind: Literal[CENTROID_KINDS] = Field(
        "weighted", description="which centroid stands for a cell"
    )
    snap_to_land: bool = Field(False, description="move predictions at sea onto land")
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu, mps")
    devices: int | str = Field("auto", description="devices per node: a number, or auto")
    num_nodes: PositiveInt = Field(
        1, description="machines the fit spans, each running `devices` processes (DDP)"
    )
    strategy: str = Field(
        "auto", description="auto (one process per device: ddp when there are several) or ddp"
    )
    precision: Literal[PRECISIONS] = Field("32-true", description="Lightning precision")
    channels_last: bool = Field(False, description="channels-last memory format (GPU speed)")
    compile: bool = Field(False, description="torch.compile the backbone")
    seed: int = Field(0, description="seed of initialization, shuffling and augmentation")
    resume: bool = Field(True, description="continue an interrupted fit of the same settings")
    progress_bar: bool = Field(True, description="Lightning's progress bar (in a terminal only)")
    log_every_n_steps: PositiveInt = Field(10, description="TensorBoard logging interval")
    limit_train_batches: int | float | None = Field(
        None, description="train on this many batches (or share) per epoch; null: all"
    )
    limit_val_batches: int | float | None = Field(
        None, description="validate on this many batches (or share); null: all"
    )
    extra: dict[str, Any] = Field(
        default_factory=dict, description="passed to pytorch_lightning.Trainer as is"
    )

    @field_validator("view_rows")
    @classmethod
    def _band_not_empty(cls, rows: tuple[float, float]) -> tuple[float, float]:
        if rows[0] >= rows[1]:
            raise ValueError(f"the top ({rows[0]}) must be above the bottom ({rows[1]})")
        return rows

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        problem = backbone_problem(name)
        if problem:
            raise ValueError(problem)
        return name

    @field_validator("lr_find", mode="before")
    @classmethod
    def _lr_find_switch(cls, value):
        # YAML 1.1 reads a bare off/no/false as False and on/yes/true as True.
        if value is True:
            return "show"
        return "off" if value is False else value

    @field_validator("hierarchy", mode="before")
    @classmethod
    def _hierarchy_levels(cls, value):
        # pydantic would read YAML's true as 1 level: say what the number means instead.
        if value is True:
            raise ValueError("expected a number of coarser levels (e.g. 3; 0: off), not true")
        return 0 if value is False else value

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, devices):
        if devices == "auto" or (type(devices) is int and devices > 0):
            return devices
        raise ValueError(f"expected a positive number of devices or auto (got {devices!r})")

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, strategy: str) -> str:
        if strategy in STRATEGIES:
            return strategy
        family = next((k for k in STRATEGY_PROBLEMS if strategy.startswith(k)), None)
        reason = STRATEGY_PROBLEMS.get(family, "not one geoguesser fits with")
        raise ValueError(f"{strategy!r}: {reason} (choose {' or '.join(STRATEGIES)})")

    @field_validator("extra")
    @classmethod
    def _extra_is_not_a_setting(cls, extra: dict) -> dict:
        named = sorted(set(extra) & set(cls.model_fields))
        if named:
            raise ValueError(f"{named[0]} is a setting of its own: use train.{named[0]}")
        return extra

    @field_validator("limit_train_batches", "limit_val_batches", mode="before")
    @classmethod
    def _batch_limit(cls, limit):
        if limit is None or (type(limit) is int and limit > 0):
            return limit
        if type(limit) is float and 0 < limit <= 1:
            return limit
        raise ValueError(
            f"expected a number of batches >= 1, a share in (0, 1], or null (got {limit!r})"
        )

    @field_validator("weights")
    @classmethod
    def _weights_file(cls, weights: str | None) -> str | None:
        if weights in (None, "imagenet"):
            return weights
        path = absolute_path(Path(weights))
        if not path.is_file():
            raise ValueError(f"{path}: weights file not found (or use null or imagenet)")
        return str(path)

    @field_validator("image_cache_dir")
    @classmethod
    def _absolute_cache(cls, path: Path | None) -> Path | None:
        return absolute_path(path)

    @model_validator(mode="after")
    def _mean_with_std(self) -> TrainSettings:
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std go together: give both, or neither")
        if self.num_nodes > 1 and self.strategy != "ddp":
            raise ValueError("num_nodes above 1 needs strategy ddp")
        return self

    @model_validator(mode="after")
    def _lr_find_in_one_process(self) -> TrainSettings:
        # Each process would run its own range test and could pick its own rate.
        several = self.num_nodes > 1 or (isinstance(self.devices, int) and self.devices > 1)
        if self.lr_find != "off" and several:
            raise ValueError(
                "lr_find runs in one process: find the rate with devices 1 and num_nodes 1,"
                " then set train.lr"
            )
        return self

    @model_validator(mode="after")
    def _compatible(self) -> TrainSettings:
        if self.view_dropout > 0 and self.fusion == "concat":
            raise ValueError(
                "view_dropout needs fusion mean or attention: concat needs all four views"
            )
        if self.retrieval and self.objective == "regression":
            raise ValueError("retrieval needs cells to search: objective classification or hybrid")
        if self.hierarchy and self.objective not in ("classification", "hybrid"):
            raise ValueError("hierarchy needs cells: objective classification or hybrid")
        if self.objective == "contrastive":
            clash = "retrieval" if self.retrieval else None
            clash = clash or ("offset_weight" if self.offset_weight != 1.0 else None)
            clash = clash or ("decode argmax" if self.decode != "mean" else None)
            if clash:
                raise ValueError(
                    f"{clash} does not apply to objective contrastive, which decodes from its"
                    " gallery (gallery_top_k): leave it out"
                )
        return self

    def shaping(self) -> dict:
        """The settings that decide what a fit computes (resume needs them unchanged)."""
        return self.model_dump(mode="json", exclude=NO_TRAIN_SHAPE)
