"""Configuration of the ``report`` stage (``stages/report.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from balnmp_cache.config import StageConfig

__all__ = [
    "DEFAULT_FIGURE_FORMATS",
    "DEFAULT_TABLE1_COLUMNS",
    "DEFAULT_THRESHOLDS",
    "FigureFormat",
    "ReportConfig",
    "ThresholdRule",
]

ThresholdRule = Literal["0.5", "youden"]

FigureFormat = Literal["png", "svg"]

DEFAULT_THRESHOLDS: tuple[ThresholdRule, ...] = ("0.5", "youden")
DEFAULT_FIGURE_FORMATS: tuple[FigureFormat, ...] = ("png", "svg")
DEFAULT_TABLE1_COLUMNS = ["Tumour Type", "Molecular subtype", "Histological grading"]


class ReportConfig(StageConfig):
    """Settings of ``balnmp-cache report``: keys of ``stages/report.toml`` and ``--flags`` of the CLI.

    ``paths`` are the ``PATH...`` arguments; every other field is the flag of the same name.
    """

    paths: list[Path] = Field(default_factory=list, description="run directories or predictions.csv files")
    out: Path = Field(Path("out/report"), description="folder for the report")
    clinical: Path | None = Field(
        None, description="cohort (BCNB root or CSV) for subgroups and Table 1; without it they are skipped"
    )
    nuclei: Path | None = Field(
        None, description="output folder of balnmp-cache nuclei (holding summaries.csv): adds a nucleus section"
    )
    alpha: float = Field(
        0.05, gt=0.0, lt=0.5, description="1 - confidence level of every interval (0.05 gives 95% intervals)"
    )
    thresholds: list[ThresholdRule] = Field(
        default_factory=lambda: list(DEFAULT_THRESHOLDS),
        min_length=1,
        description="threshold rules, each reported separately: '0.5' (the official code, score >= 0.5 is "
        "positive) and 'youden' (Youden-optimal on the val split, applied to every split)",
    )
    age_cutoff: float = Field(50.0, gt=0.0, description="age subgroups are <= and > this age (years)")
    t_stage_cutoff_cm: float = Field(2.0, gt=0.0, description="T1 is a tumour size <= this (cm), T2 is larger")
    figure_formats: list[FigureFormat] = Field(
        default_factory=lambda: list(DEFAULT_FIGURE_FORMATS),
        min_length=1,
        description="file formats of the figures; the HTML report embeds PNGs either way",
    )
    table1_columns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TABLE1_COLUMNS),
        description="extra categorical cohort columns summarised in Table 1 when present",
    )
    heatmaps: Path | None = Field(
        None,
        description="output of `balnmp-cache heatmap` (or a folder of them, one per run) to link from the report",
    )

    @field_validator("thresholds", mode="before")
    @classmethod
    def _numbers_as_rules(cls, value: Any) -> Any:
        # ``thresholds = [0.5, "youden"]`` in TOML is accepted as the rule "0.5".
        if isinstance(value, (list, tuple)):
            return [str(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
        return value

    @field_validator("thresholds", "figure_formats")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))
