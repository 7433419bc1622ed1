"""The ``balnmp-cache`` command line: a thin typer layer over the stage functions.

Each command loads its stage configuration (``--config``), lets flags override single fields,
calls one library function and renders its result. Heavy modules are imported inside the
commands so that ``balnmp-cache --help`` answers at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from balnmp_cache import __version__

app = typer.Typer(
    name="balnmp-cache",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="Predict axillary lymph node metastasis from breast biopsy slides: cache patch features once "
    "(extract), train many attention-MIL variants on them (train, ablate), report paper-grade statistics (report).",
)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="stage configuration (TOML) to start from")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="show debug messages")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"balnmp-cache {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")] = False,
) -> None:
    """balnmp-cache command line."""


def _overrides(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None and v != [] and v != ()}


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Argument(help="folder to write the BCNB-shaped demo cohort into")],
    patients: Annotated[Optional[int], typer.Option(help="number of patients (default: the demo size)")] = None,
    seed: Annotated[int, typer.Option(help="random seed; the same seed writes the same cohort")] = 0,
    pyramidal: Annotated[bool, typer.Option("--pyramidal/--no-pyramidal", help="also write pyramidal TIFFs")] = True,
    force: Annotated[bool, typer.Option("--force", help="rewrite a complete cohort written with the same arguments")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write a synthetic cohort in the exact layout of the BCNB release."""
    from balnmp_cache import _cli_support as ui

    ui.setup_logging(verbose=verbose)

    def body() -> None:
        import json

        from balnmp_cache.demo import DEFAULT_PATIENTS, MARKER, write_demo_cohort

        wanted = {"patients": patients or DEFAULT_PATIENTS, "seed": seed, "pyramidal": pyramidal}
        marker = out / MARKER
        if not force and marker.is_file():
            done = json.loads(marker.read_text(encoding="utf-8"))
            if done.get("complete") and done.get("arguments") == wanted:
                ui.stdout.print(f"demo cohort already complete in {out} (same arguments); --force rewrites it", highlight=False)
                return
        with ui.log_to_file(out / "demo-data.log"), ui.RichProgress() as progress:
            summary = write_demo_cohort(out, patients=patients or DEFAULT_PATIENTS, seed=seed, pyramidal=pyramidal, progress=progress)
        counts = ", ".join(f"{k} {v}" for k, v in summary.class_counts.items())
        splits = ", ".join(f"{k} {v}" for k, v in summary.split_counts.items())
        ui.stdout.print(
            f"demo cohort: {summary.n_patients} patients ({counts}; {splits}), "
            f"{summary.n_slides_jpeg} JPEG + {summary.n_slides_tiff} pyramidal slides in {summary.root} "
            f"({summary.seconds:.1f} s)",
            highlight=False,
        )

    ui.run_guarded(body)


@app.command()
def extract(
    sources: Annotated[Optional[list[Path]], typer.Argument(help="slides, folders, BCNB roots, pre-cut patch folders or manifest CSVs")] = None,
    out: Annotated[Optional[Path], typer.Option(help="cache root; the cache goes to <out>/<encoder>-<mode>-<key>/")] = None,
    encoder: Annotated[Optional[str], typer.Option(help="encoder name (see 'balnmp-cache doctor')")] = None,
    mode: Annotated[Optional[str], typer.Option(help="avg | max | flatten")] = None,
    weights: Annotated[Optional[str], typer.Option(help="imagenet | random | PATH to a checkpoint")] = None,
    patch_px: Annotated[Optional[int], typer.Option(help="patch side in pixels")] = None,
    target_mpp: Annotated[Optional[float], typer.Option(help="read at this µm/px")] = None,
    magnification: Annotated[Optional[float], typer.Option(help="read at this objective power")] = None,
    slide_mpp: Annotated[Optional[float], typer.Option(help="µm/px for slides without MPP metadata")] = None,
    format: Annotated[Optional[str], typer.Option(help="hdf5 | zarr")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="float16 | float32")] = None,
    skip_errors: Annotated[Optional[bool], typer.Option("--skip-errors/--no-skip-errors", help="go on after a failing slide")] = None,
    force: Annotated[Optional[bool], typer.Option("--force", help="redo slides that are already complete")] = None,
    prefer: Annotated[Optional[str], typer.Option(help="jpeg | pyramidal: which slides of a BCNB root to read")] = None,
    patch_filter: Annotated[Optional[str], typer.Option(help="white_ratio (official) | background")] = None,
    white_ratio_max: Annotated[Optional[float], typer.Option(help="drop a patch whose white ratio is >= this (0.3)")] = None,
    background_max: Annotated[Optional[float], typer.Option(help="with --patch-filter background: drop a patch whose background share is >= this")] = None,
    min_tissue: Annotated[Optional[float], typer.Option(help="tissue share a patch needs when a slide has no annotation")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of --weights random")] = None,
    precision: Annotated[Optional[str], typer.Option(help="auto (bf16 where native: GPU, AVX512-BF16/AMX CPU) | fp32 | bf16 | fp16")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="patches per encoder batch")] = None,
    num_workers: Annotated[Optional[int], typer.Option(help="reader threads")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto | cpu | cuda")] = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Stage 1: tile slides and cache one embedding per patch (HDF5 or Zarr)."""
    from balnmp_cache import _cli_support as ui
    from balnmp_cache import _cli_tables as ui_tables

    ui.setup_logging(verbose=verbose)

    def body() -> int:
        from balnmp_cache.config import load_config
        from balnmp_cache.extract import ExtractConfig, run_extract

        cfg = load_config(
            ExtractConfig,
            config,
            _overrides(
                sources=sources, out=out, encoder=encoder, mode=mode, weights=weights, patch_px=patch_px,
                target_mpp=target_mpp, magnification=magnification, slide_mpp=slide_mpp, format=format, dtype=dtype,
                skip_errors=skip_errors, force=force, prefer=prefer, patch_filter=patch_filter,
                white_ratio_max=white_ratio_max, background_max=background_max, min_tissue=min_tissue, seed=seed, precision=precision, batch_size=batch_size,
                num_workers=num_workers, device=device,
            ),
        )
        with ui.log_to_file(cfg.out / "extract.log"), ui.RichProgress() as progress:
            result = run_extract(cfg, progress=progress)
        ui.stdout.print(ui_tables.extract_summary(result))
        return result.exit_code

    raise typer.Exit(ui.run_guarded(body))


@app.command()
def train(
    cache: Annotated[Optional[Path], typer.Option(help="feature cache directory")] = None,
    cohort: Annotated[Optional[Path], typer.Option(help="BCNB root or cohort CSV")] = None,
    task: Annotated[Optional[int], typer.Option(help="0 N0 vs N(+) | 1 N+(1-2) vs N+(>2) | 2 three-class | 3 N0 vs N+(1-2) | 4 N0 vs N+(>2)")] = None,
    head: Annotated[Optional[str], typer.Option(help="balnmp | abmil | gated_abmil | mean | max | clinical_only")] = None,
    clinical: Annotated[Optional[bool], typer.Option("--clinical/--no-clinical", help="fuse clinical data")] = None,
    bag_size: Annotated[Optional[int], typer.Option(help="N: patches per bag")] = None,
    bags_per_slide: Annotated[Optional[int], typer.Option(help="M: bags per patient and epoch (default floor(n/N))")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="maximum epochs")] = None,
    seed: Annotated[Optional[int], typer.Option(help="random seed")] = None,
    split: Annotated[Optional[str], typer.Option(help="bcnb | official | kfold")] = None,
    official_json: Annotated[Optional[Path], typer.Option(help="folder of the official *-type-<task>.json files")] = None,
    bags: Annotated[Optional[str], typer.Option(help="random | official")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto | cpu | cuda")] = None,
    precision: Annotated[Optional[str], typer.Option(help="auto | fp32 | bf16 (auto: bf16 training where native — GPU, AVX512-BF16/AMX CPU; evaluation is always fp32)")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for training")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run directory")] = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Stage 2: train an attention-MIL head (optionally with clinical data) on cached features."""
    from balnmp_cache import _cli_support as ui
    from balnmp_cache import _cli_tables as ui_tables

    ui.setup_logging(verbose=verbose)

    def body() -> None:
        from balnmp_cache.config import load_config
        from balnmp_cache.train import TrainConfig, run_train

        cfg = load_config(
            TrainConfig,
            config,
            _overrides(
                cache=cache, cohort=cohort, task=task, head=head, clinical=clinical, bag_size=bag_size,
                bags_per_slide=bags_per_slide, epochs=epochs, seed=seed, split=split, official_json=official_json,
                bags=bags, device=device, precision=precision, threads=threads, out=out,
            ),
        )
        with ui.log_to_file(cfg.out / "train.log"), ui.RichProgress() as progress:
            result = run_train(cfg, progress=progress)
        ui.stdout.print(ui_tables.train_summary(result))

    ui.run_guarded(body)


@app.command()
def ablate(
    grid: Annotated[Path, typer.Argument(help="ablation grid (TOML), e.g. stages/ablations/demo.toml")],
    out: Annotated[Optional[Path], typer.Option(help="folder for the runs and the results table")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Train every configuration of a grid in one process, sharing the loaded features; resumable."""
    from balnmp_cache import _cli_support as ui
    from balnmp_cache import _cli_tables as ui_tables

    ui.setup_logging(verbose=verbose)

    def body() -> None:
        from balnmp_cache.config import load_config
        from balnmp_cache.train import run_ablation
        from balnmp_cache.train.ablate import AblationGrid

        cfg = load_config(AblationGrid, grid, _overrides(out=out))
        with ui.log_to_file(Path(cfg.out) / "ablate.log"), ui.RichProgress() as progress:
            result = run_ablation(cfg, progress=progress)
        ui.stdout.print(ui_tables.ablation_summary(result))

    ui.run_guarded(body)


@app.command()
def report(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="run directories or predictions.csv files")] = None,
    out: Annotated[Optional[Path], typer.Option(help="folder for the report")] = None,
    clinical: Annotated[Optional[Path], typer.Option(help="cohort (BCNB root or CSV) for subgroups and Table 1")] = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Statistics, tables and figures of the paper from predictions."""
    from balnmp_cache import _cli_support as ui
    from balnmp_cache import _cli_tables as ui_tables

    ui.setup_logging(verbose=verbose)

    def body() -> None:
        from balnmp_cache.config import load_config
        from balnmp_cache.report import ReportConfig, run_report

        cfg = load_config(ReportConfig, config, _overrides(paths=paths, out=out, clinical=clinical))
        with ui.log_to_file(cfg.out / "report.log"), ui.RichProgress() as progress:
            result = run_report(cfg, progress=progress)
        ui.stdout.print(ui_tables.report_summary(result))

    ui.run_guarded(body)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a trained run directory")],
    sources: Annotated[list[Path], typer.Argument(help="slides, folders, BCNB roots, or a feature cache")],
    cohort: Annotated[Optional[Path], typer.Option(help="clinical data for the patients (runs trained with clinical data need it)")] = None,
    top_k: Annotated[int, typer.Option(help="patches with the highest attention to list per patient")] = 5,
    out: Annotated[Optional[Path], typer.Option(help="folder for predictions.csv and extracted features")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Apply a trained run to new slides or patients."""
    from balnmp_cache import _cli_support as ui
    from balnmp_cache import _cli_tables as ui_tables

    ui.setup_logging(verbose=verbose)

    def body() -> None:
        from balnmp_cache.config import load_config
        from balnmp_cache.train import PredictConfig, run_predict

        cfg = load_config(PredictConfig, None, _overrides(run_dir=run_dir, sources=sources, cohort=cohort, top_k=top_k, out=out))
        with ui.log_to_file(cfg.out_dir / "predict.log"), ui.RichProgress() as progress:
            result = run_predict(cfg, progress=progress)
        ui.stdout.print(ui_tables.predict_summary(result))

    ui.run_guarded(body)


@app.command()
def verify(
    cache_dir: Annotated[Path, typer.Argument(help="a feature cache directory")],
    verbose: VerboseOpt = False,
) -> None:
    """Check every file of a cache: shapes, dtypes, NaN/inf, completion, consistent provenance."""
    from balnmp_cache import _cli_support as ui
    from balnmp_cache import _cli_tables as ui_tables

    ui.setup_logging(verbose=verbose)

    def body() -> int:
        from balnmp_cache.cache import verify_cache

        problems = verify_cache(cache_dir)
        ui.stdout.print(ui_tables.verify_summary(cache_dir, problems))
        return 1 if problems else 0

    raise typer.Exit(ui.run_guarded(body))


@app.command()
def doctor(verbose: VerboseOpt = False) -> None:
    """Versions, slide readers, GPU, encoder weights available offline, and how to fix what is missing."""
    from balnmp_cache import _cli_support as ui
    from balnmp_cache import _cli_tables as ui_tables

    ui.setup_logging(verbose=verbose)

    def body() -> int:
        from balnmp_cache.doctor import run_checks

        checks = run_checks()
        ui.stdout.print(ui_tables.doctor_table(checks))
        return 1 if any(c.status == "missing" and c.required for c in checks) else 0

    raise typer.Exit(ui.run_guarded(body))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
