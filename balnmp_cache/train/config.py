"""Configuration of stage 2 (``balnmp-cache train`` / ``stages/train.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from balnmp_cache.config import StageConfig
from balnmp_cache.mil.catalog import list_heads

__all__ = ["PredictConfig", "TrainConfig"]


class TrainConfig(StageConfig):
    """One training run; keys of ``stages/train.toml`` and ``--flags`` of the CLI."""

    cache: Path = Field(Path("out/cache"), description="feature cache (a cache directory or a root holding one)")
    cohort: Path = Field(Path("demo/bcnb"), description="BCNB root or cohort CSV")
    out: Path = Field(Path("out/runs/run"), description="run directory")
    force: bool = Field(False, description="replace a finished run in --out (without it a finished run is refused)")
    task: int = Field(
        0, ge=0, le=4, description="0 N0 vs N(+), 1 N+(1-2) vs N+(>2), 2 three-class, 3 N0 vs N+(1-2), 4 N0 vs N+(>2)"
    )
    head: str = Field(
        "balnmp", description=f"MIL head: {' | '.join(list_heads())} (or one added with register_head)"
    )
    head_options: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="extra head options, e.g. dropout"
    )
    clinical: bool = Field(True, description="fuse clinical data (age, size, ER, PR, HER2) after pooling")
    clinical_extra: list[str] = Field(
        default_factory=list, description="further cohort columns to add to the clinical vector"
    )
    bag_size: int = Field(10, ge=1, le=100_000, description="N: patches per bag")
    bags_per_slide: int | None = Field(
        None, ge=1, description="M: bags per patient and epoch; default floor(n_patches / N), at least 1"
    )
    bags: Literal["random", "official"] = Field(
        "random", description="'random': redraw bags every epoch; 'official': replay the official JSON bags"
    )
    batch_bags: int = Field(64, ge=1, le=65_536, description="B: bags per optimizer step")
    epochs: int = Field(60, ge=1, le=10_000, description="maximum epochs")
    patience: int = Field(15, ge=1, description="stop after this many epochs without a better validation AUC")
    optimizer: Literal["adam", "sgd"] = Field(
        "adam", description="adam (the paper) or sgd with momentum (the official code)"
    )
    lr: float = Field(1e-4, gt=0, description="learning rate")
    weight_decay: float = Field(1e-3, ge=0, description="L2 weight decay")
    momentum: float = Field(0.3, ge=0, lt=1, description="SGD momentum (the official default is 0.3)")
    t0: int = Field(20, ge=1, description="CosineAnnealingWarmRestarts T_0 (epochs)")
    t_mult: int = Field(2, ge=1, description="CosineAnnealingWarmRestarts T_mult")
    class_weights: bool = Field(False, description="weight the loss by inverse class frequency of the training split")
    merge: Literal["mean", "max"] = Field("mean", description="patient score from its bags' probabilities")
    split: Literal["bcnb", "official", "kfold"] = Field("bcnb", description="where train/val/test come from")
    official_json: Path | None = Field(None, description="folder of the official *-type-<task>.json files")
    folds: int = Field(5, ge=2, description="k of k-fold")
    fold: int = Field(0, ge=0, description="which fold is the test set")
    splits_file: Path | None = Field(None, description="k-fold assignment file, written once and reused")
    split_seed: int = Field(0, description="seed of the k-fold assignment (independent of the training seed)")
    seed: int = Field(0, description="seed of initialisation, bag sampling and dropout")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where training runs")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="forward-pass precision: 'auto' = bf16 autocast where computed natively "
        "(GPU, CPUs with AVX512-BF16/AMX), else fp32",
    )
    threads: int | None = Field(
        None, ge=1, le=1024, description="CPU threads torch may use while training; default: torch's own setting"
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.bags == "official" and self.official_json is None:
            raise ValueError(
                "bags = 'official' needs official_json (--official-json) with the *-type-<task>.json files"
            )
        if self.split == "official" and self.official_json is None:
            raise ValueError("split = 'official' needs official_json (--official-json)")
        if self.fold >= self.folds:
            raise ValueError(f"fold {self.fold} is out of range for folds = {self.folds}")
        return self


class PredictConfig(StageConfig):
    """One ``predict`` call: a trained run applied to new slides or a feature cache."""

    run_dir: Path = Field(..., description="a finished train run directory")
    sources: list[Path] = Field(default_factory=list, description="slides, folders, BCNB roots, or one feature cache")
    cohort: Path | None = Field(
        None, description="clinical data of the patients (runs trained with clinical data need it)"
    )
    top_k: int = Field(5, ge=0, le=10_000, description="patches with the highest attention to list per patient")
    out: Path | None = Field(None, description="output folder; default <run_dir>/predict")

    @property
    def out_dir(self) -> Path:
        """Where the outputs go: ``out``, else ``<run_dir>/predict``."""
        return Path(self.out) if self.out is not None else Path(self.run_dir) / "predict"
