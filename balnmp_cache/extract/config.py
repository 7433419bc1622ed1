"""Configuration of stage 1 (``balnmp-cache extract`` / ``stages/extract.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from balnmp_cache.config import StageConfig

__all__ = ["ExtractConfig"]


class ExtractConfig(StageConfig):
    """Everything ``extract`` needs; keys of ``stages/extract.toml`` and ``--flags`` of the CLI."""

    sources: list[Path] = Field(
        default_factory=list,
        description="slide files, folders of slides, BCNB roots, folders of BCNB pre-cut patches, or manifest CSVs",
    )
    out: Path = Field(
        Path("out/cache"), description="cache root; the cache is written to <out>/<encoder>-<mode>-<key>/"
    )
    encoder: str = Field("efficientnet_lite0", description="encoder name (balnmp-cache doctor lists them)")
    mode: Literal["avg", "max", "flatten", "cls", "mean_tokens", "cls+mean"] | None = Field(
        None, description="pooling: avg|max|flatten for CNNs, cls|mean_tokens|cls+mean for ViTs; default: the encoder's"
    )
    weights: str = Field(
        "pretrained",
        description="'pretrained' (the encoder's published weights, from local caches only; 'imagenet' is a "
        "synonym), 'random' (seeded) or a checkpoint path",
    )
    encoder_revision: str | None = Field(
        None, description="Hugging Face revision (ref or commit) of a hub encoder's snapshot in the local cache"
    )
    encoder_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="model keyword arguments (a TOML table, no flag), e.g. {pretrained_cfg_overlay = {crop_pct = 1.0}}",
    )
    seed: int = Field(0, description="seed of random weights")
    patch_px: int = Field(256, ge=16, le=4096, description="patch side in pixels at the read resolution")
    target_mpp: float | None = Field(
        None, gt=0, description="read at this µm/px; default: the encoder's training µm/px (0.5 for the foundation "
        "models), native resolution for the CNNs"
    )
    magnification: float | None = Field(None, gt=0, description="read at this objective power instead of native")
    slide_mpp: float | None = Field(None, gt=0, description="µm/px of slides whose files carry none")
    format: Literal["hdf5", "zarr"] = Field("hdf5", description="feature-store format")
    dtype: Literal["float16", "float32"] = Field("float16", description="stored feature dtype")
    skip_errors: bool = Field(True, description="record a failing slide in the manifest and go on")
    force: bool = Field(
        False, description="redo slides that are already complete, and replace another source's slide of the same id"
    )
    slide_id_prefix: str = Field(
        "",
        max_length=100,
        description="text put before every slide id (e.g. 'colB-' makes colB/1.jpg slide 'colB-1'), so slides of "
        "another collection with the same file names get their own files in a shared --out instead of being refused; "
        "a patient id taken from the file name gets it too, one from a manifest CSV is kept",
    )
    patch_filter: Literal["white_ratio", "background"] = Field(
        "white_ratio",
        description="'white_ratio': the official rule (share of channel values == 255); "
        "'background': near-white / low-saturation pixel share",
    )
    white_ratio_max: float = Field(0.3, gt=0, le=1, description="drop a patch when its white ratio is >= this")
    background_max: float = Field(0.5, gt=0, le=1, description="drop a patch when its background share is >= this")
    min_tissue: float = Field(0.5, gt=0, le=1, description="tissue share a patch needs when no annotation exists")
    prefer: Literal["jpeg", "pyramidal"] = Field("jpeg", description="which slide form of a BCNB root to read")
    batch_size: int = Field(32, ge=1, le=4096, description="patches per encoder batch")
    num_workers: int = Field(2, ge=1, le=64, description="reader threads")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the encoder runs")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="autocast precision; 'auto' = bf16 where computed natively (GPU, CPUs with AVX512-BF16/AMX), "
        "else fp32",
    )
    decode: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="where JPEG patches and plain-JPEG slides are decoded; 'auto' = on the GPU when the encoder runs "
        "there (part of the cache key when 'cuda')",
    )
    shard: str | None = Field(
        None,
        description="'I/N': extract only shard I (0-based) of N size-balanced shards of the slide list, so N processes "
        "or a Slurm array (sbatch --array=0-(N-1)) cover a cohort together; not saved in config.toml",
    )

    @field_validator("shard")
    @classmethod
    def _valid_shard(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from balnmp_cache.errors import ConfigError
        from balnmp_cache.shards import parse_shard

        try:
            index, count = parse_shard(value)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return f"{index}/{count}"

    @field_validator("slide_id_prefix")
    @classmethod
    def _safe_prefix(cls, value: str) -> str:
        if value.startswith(".") or any(c in value for c in "/\\") or any(ord(c) < 32 for c in value):
            raise ValueError(
                f"slide_id_prefix {value!r} must not start with '.' or contain '/', '\\' or control characters "
                "(it becomes part of file names); e.g. --slide-id-prefix colB-"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _encoder_resolution(cls, data: Any) -> Any:
        """No target given: read at the encoder's training resolution (``EncoderSpec.mpp``; CNNs: native)."""
        if isinstance(data, dict) and data.get("target_mpp") is None and data.get("magnification") is None:
            from balnmp_cache.encoders import registered_mpp  # no torch: only the registry's specs

            mpp = registered_mpp(str(data.get("encoder", cls.model_fields["encoder"].default)))
            if mpp is not None:
                data = {**data, "target_mpp": mpp}
        return data

    @model_validator(mode="after")
    def _one_target(self) -> ExtractConfig:
        if self.target_mpp is not None and self.magnification is not None:
            raise ValueError("give either target_mpp (--target-mpp) or magnification (--magnification), not both")
        return self
