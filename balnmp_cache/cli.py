"""The ``balnmp-cache`` command line: a thin typer layer over the stage functions.

The stage commands (extract, train, ablate, report, predict) are generated from their configuration
classes (:mod:`balnmp_cache._cli_options`): each field is one flag, declared once in the stage's
config. Every command runs through one wrapper (:func:`_run`): logging set-up, user errors and failed
filesystem calls as one line with exit status 2, and for stages the configuration loaded with the given
flags as overrides, a log file in the output folder (beside it for train and report, whose folder is
swapped in whole), a progress bar and the summary table.

Only the configuration classes are imported up front (pydantic, no torch); stage functions, rich and
the tables are imported when a command runs, so ``balnmp-cache --help`` answers at once.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from balnmp_cache import __version__
from balnmp_cache._cli_options import FieldParameters, given_values
from balnmp_cache.engines.options import EngineOptions
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.heatmap.config import HeatmapConfig
from balnmp_cache.nuclei.config import NucleiConfig
from balnmp_cache.report.config import ReportConfig
from balnmp_cache.train.ablate import AblationGrid
from balnmp_cache.train.config import PredictConfig, TrainConfig

app = typer.Typer(
    name="balnmp-cache",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="Predict axillary lymph node metastasis from breast biopsy slides: cache patch features once "
    "(extract), train many attention-MIL variants on them (train, ablate), report paper-grade statistics (report).",
)

VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="show debug messages")]
_CONFIG_HELP = "stage configuration (TOML) to start from"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"balnmp-cache {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """balnmp-cache command line."""


def _run(body: Callable[[], int | None], *, verbose: bool) -> None:
    """Run a command body: logging to the terminal, a user error as one line (exit 2), its exit code."""
    import logging

    from balnmp_cache import _cli_support as ui

    # A log file on a full disk must not print a traceback per record: the command's own error line says it.
    logging.raiseExceptions = False
    ui.setup_logging(verbose=verbose)
    raise typer.Exit(ui.run_guarded(body) or 0)


def _check_head(name: str) -> str:
    from balnmp_cache.mil.registry import list_heads  # imports torch: only when --head is given

    heads = list_heads()
    if name not in heads:
        raise ValueError(f"unknown MIL head {name!r}; valid heads are: {', '.join(heads)}")
    return name


def _check_segmenter(name: str) -> str:
    from balnmp_cache.nuclei.segmenters import list_segmenters

    if name not in list_segmenters():
        raise ValueError(f"unknown segmenter {name!r}; valid segmenters are: {', '.join(list_segmenters())}")
    return name


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Argument(help="folder to write the BCNB-shaped demo cohort into")],
    patients: Annotated[int | None, typer.Option(help="number of patients (default: the demo size)")] = None,
    seed: Annotated[int, typer.Option(help="random seed; the same seed writes the same cohort")] = 0,
    pyramidal: Annotated[bool, typer.Option("--pyramidal/--no-pyramidal", help="also write pyramidal TIFFs")] = True,
    force: Annotated[
        bool, typer.Option("--force", help="rewrite a complete cohort written with the same arguments")
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write a synthetic cohort in the exact layout of the BCNB release."""

    def body() -> None:
        import json

        from balnmp_cache import _cli_support as ui
        from balnmp_cache import _cli_tables as tables
        from balnmp_cache.demo import DEFAULT_PATIENTS, MARKER, write_demo_cohort
        from balnmp_cache.demo.cohort import check_arguments

        count = DEFAULT_PATIENTS if patients is None else patients  # --patients 0 is an error, not the default
        check_arguments(out, count, seed)  # before the log file makes the folder
        wanted: dict[str, Any] = {"patients": count, "seed": seed, "pyramidal": pyramidal}
        marker = out / MARKER
        if not force and marker.is_file():
            try:
                done = json.loads(marker.read_text(encoding="utf-8"))
            except ValueError:
                done = {}  # unreadable: write_demo_cohort refuses the folder with its own message
            if isinstance(done, dict) and done.get("complete") and done.get("arguments") == wanted:
                message = f"demo cohort already complete in {out} (same arguments); --force rewrites it"
                ui.stdout.print(message, highlight=False)
                return
        with ui.log_to_file(out / "demo-data.log"), ui.RichProgress() as progress:
            summary = write_demo_cohort(out, **wanted, progress=progress)
        ui.stdout.print(tables.demo_summary(summary), highlight=False)

    _run(body, verbose=verbose)


@dataclass(frozen=True)
class Stage:
    """A command generated from a stage configuration.

    Attributes:
        name: the command, also the stem of its log file (``<out>/<name>.log``).
        doc: the command's help.
        fields: the configuration fields it exposes as arguments and flags.
        run: ``"module:function"``, called as ``function(config, progress=...)``.
        summary: the :mod:`balnmp_cache._cli_tables` function that renders the result.
        config_option: whether ``--config/-c`` starts from a TOML file.
        config_argument: name and help of a positional argument that *is* the configuration file
            (ablate's GRID), in place of ``--config``.
        log_dir: the attribute of the configuration naming the output folder.
        log_beside: log to ``<folder>.log`` beside the output folder instead of ``<folder>/<name>.log``
            inside it (train and report build their folder aside and swap it in whole).
        engines: the command takes ``--engine`` and its flags (:mod:`balnmp_cache.engines`).
    """

    name: str
    doc: str
    fields: FieldParameters
    run: str
    summary: str
    config_option: bool = True
    config_argument: tuple[str, str] | None = None
    log_dir: str = "out"
    log_beside: bool = False
    engines: bool = False

    def log_file(self, cfg: Any) -> Path:
        """The log file of one run of the command with the configuration ``cfg``."""
        from balnmp_cache.outdir import log_path

        folder = Path(getattr(cfg, self.log_dir))
        return log_path(folder) if self.log_beside else folder / f"{self.name}.log"

    def parameters(self) -> list[inspect.Parameter]:
        """The command's signature: the context, the config file, the fields, ``--config``, ``--verbose``.

        A field named like one of the command's own parameters makes :class:`inspect.Signature` refuse
        the duplicate name when the command is built.
        """
        keyword = inspect.Parameter.KEYWORD_ONLY
        params = [inspect.Parameter("ctx", keyword, annotation=typer.Context)]
        if self.config_argument is not None:
            name, help_text = self.config_argument
            params.append(inspect.Parameter(name, keyword, annotation=Annotated[Path, typer.Argument(help=help_text)]))
        params += self.fields.parameters()
        if self.engines:
            params += _ENGINE_FIELDS.parameters()
        if self.config_option:
            option = typer.Option("--config", "-c", help=_CONFIG_HELP)
            params.append(inspect.Parameter("config", keyword, default=None, annotation=Annotated[Path | None, option]))
        params.append(inspect.Parameter("verbose", keyword, default=False, annotation=VerboseOpt))
        return params

    def execute(self, config: Path | None, overrides: dict[str, Any], engine: dict[str, Any] | None = None) -> int:
        """Load the configuration, run the stage (on ``engine``) with a log file and a progress bar, print
        the summary."""
        import functools

        from balnmp_cache import _cli_support as ui
        from balnmp_cache import _cli_tables as tables
        from balnmp_cache.config import load_config
        from balnmp_cache.engines import engine_runner

        cfg = load_config(self.fields.model, config, overrides)
        module, function = self.run.split(":")
        run = getattr(importlib.import_module(module), function)
        options = load_config(EngineOptions, None, engine) if engine is not None else None
        on_engine = engine_runner(self.name, options) if options is not None else None
        if on_engine is not None:
            run = functools.partial(on_engine, options=options)
        with ui.log_to_file(self.log_file(cfg)), ui.RichProgress() as progress:
            result = run(cfg, progress=progress)
        ui.stdout.print(getattr(tables, self.summary)(result))
        return int(getattr(result, "exit_code", 0))


def _add_stage(stage: Stage) -> None:
    def command(ctx: typer.Context, **values: Any) -> None:
        config_name = stage.config_argument[0] if stage.config_argument else "config"
        config, verbose = values.pop(config_name, None), values.pop("verbose")
        engine_values = {name: values.pop(name) for name in _ENGINE_FIELDS.names() if name in values}
        overrides = given_values(ctx, values)
        engine_given = given_values(ctx, engine_values) if stage.engines else None
        _run(lambda: stage.execute(config, overrides, engine_given), verbose=verbose)

    command.__signature__ = inspect.Signature(stage.parameters())  # type: ignore[attr-defined]
    command.__doc__ = stage.doc
    app.command(stage.name)(command)


_ENGINE_FIELDS = FieldParameters(EngineOptions)

STAGES = (
    Stage(
        "extract",
        "Stage 1: tile slides and cache one embedding per patch (HDF5 or Zarr).",
        FieldParameters(ExtractConfig, arguments=("sources",), exclude=("encoder_kwargs",)),
        run="balnmp_cache.extract:run_extract",
        summary="extract_summary",
        engines=True,
    ),
    Stage(
        "nuclei",
        "Nucleus morphometry (the paper's §2.4): segment and measure nuclei per slide, histogram bags for train.",
        FieldParameters(NucleiConfig, arguments=("sources",), checks={"segmenter": _check_segmenter}),
        run="balnmp_cache.nuclei:run_nuclei",
        summary="nuclei_summary",
    ),
    Stage(
        "train",
        "Stage 2: train an attention-MIL head (optionally with clinical data) on cached features.",
        FieldParameters(
            TrainConfig,
            exclude=("head_options",),
            checks={"head": _check_head},
        ),
        run="balnmp_cache.train:run_train",
        summary="train_summary",
        log_beside=True,
    ),
    Stage(
        "ablate",
        "Train every configuration of a grid in one process, sharing the loaded features; resumable.",
        FieldParameters(AblationGrid, exclude=("description", "base", "grid")),
        run="balnmp_cache.train:run_ablation",
        summary="ablation_summary",
        config_option=False,
        config_argument=("grid", "ablation grid (TOML), e.g. stages/ablations/demo.toml"),
        engines=True,
    ),
    Stage(
        "report",
        "Statistics, tables and figures of the paper from predictions.",
        FieldParameters(ReportConfig, arguments=("paths",)),
        run="balnmp_cache.report:run_report",
        summary="report_summary",
        log_beside=True,
    ),
    Stage(
        "predict",
        "Apply a trained run to new slides or patients.",
        FieldParameters(PredictConfig, arguments=("run_dir", "sources"), required=("sources",)),
        run="balnmp_cache.train:run_predict",
        summary="predict_summary",
        config_option=False,
        log_dir="out_dir",
    ),
    Stage(
        "heatmap",
        "Attention heatmaps, top and bottom patches and QuPath GeoJSON of a trained run, from the cache alone.",
        FieldParameters(HeatmapConfig, arguments=("run_dir", "slides")),
        run="balnmp_cache.heatmap:run_heatmap",
        summary="heatmap_summary",
        log_dir="out_dir",
    ),
)


for _stage in STAGES:
    _add_stage(_stage)


@app.command()
def verify(
    cache_dir: Annotated[Path, typer.Argument(help="a feature cache directory")],
    verbose: VerboseOpt = False,
) -> None:
    """Check every file of a cache: shapes, dtypes, NaN/inf, completion, consistent provenance."""

    def body() -> int:
        from balnmp_cache import _cli_support as ui
        from balnmp_cache import _cli_tables as tables
        from balnmp_cache.cache import verify_cache

        problems = verify_cache(cache_dir)
        ui.stdout.print(tables.verify_summary(cache_dir, problems))
        return 1 if problems else 0

    _run(body, verbose=verbose)


@app.command()
def doctor(verbose: VerboseOpt = False) -> None:
    """Versions, slide readers, GPU, encoder weights available offline, and how to fix what is missing."""

    def body() -> int:
        from balnmp_cache import _cli_support as ui
        from balnmp_cache import _cli_tables as tables
        from balnmp_cache.doctor import run_checks

        checks = run_checks()
        ui.stdout.print(tables.doctor_table(checks))
        return 1 if any(c.status == "missing" and c.required for c in checks) else 0

    _run(body, verbose=verbose)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
