"""The CLI surface: fast help, every subcommand listed, flags generated from the configs, user errors in one line."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import time
import tomllib
import typing
from pathlib import Path

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

from balnmp_cache.cli import STAGES, app

from .report.conftest import binary_scores, run_json, synthetic_labels, write_predictions

SUBCOMMANDS = ("demo-data", "extract", "nuclei", "train", "ablate", "report", "predict", "heatmap", "verify", "doctor")


def test_help_lists_every_subcommand():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in SUBCOMMANDS:
        assert name in result.output


def test_help_is_fast_and_imports_nothing_heavy():
    code = (
        "import sys, time; t = time.perf_counter();"
        "from balnmp_cache.cli import app;"
        "heavy = [m for m in ('torch', 'h5py', 'zarr', 'pandas', 'matplotlib', 'cucim', 'openslide')"
        " if m in sys.modules];"
        "print(heavy, time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[]"), out
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "balnmp_cache.cli", "--help"], capture_output=True, check=True)
    assert time.perf_counter() - start < 3.0


def _package_heads() -> list[str]:
    """The heads balnmp_cache registers itself; a test module may register more in this process (``toy``)."""
    from balnmp_cache.mil import catalog

    return [spec.name for spec in catalog.head_specs() if spec.module.startswith("balnmp_cache.")]


def test_train_help_lists_the_heads_from_the_catalog_fast_and_without_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from balnmp_cache.cli import app;"
        "result = CliRunner().invoke(app, ['train', '--help'], terminal_width=400);"
        "heavy = [m for m in ('torch', 'h5py', 'zarr', 'pandas', 'matplotlib', 'cucim', 'openslide')"
        " if m in sys.modules];"
        "print(heavy, result.exit_code)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[] 0"), out
    heads, line = _package_heads(), _help_lines("train")["--head"]
    assert heads and all(name in line for name in heads)  # the valid values of --head
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "balnmp_cache.cli", "train", "--help"], capture_output=True, check=True)
    assert time.perf_counter() - start < 3.0


def test_unknown_config_key_fails_cleanly(tmp_path):
    config = tmp_path / "train.toml"
    config.write_text("heads = 'abmil'\n")
    result = CliRunner().invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2
    assert "unknown key 'heads'" in result.output
    assert "Traceback" not in result.output


@functools.cache
def _doctor_entries(width: int) -> dict[str, str]:
    """``balnmp-cache doctor`` in a fresh process at ``width`` columns: check name -> its status, detail and fix."""
    env = {**os.environ, "COLUMNS": str(width)}
    command = [sys.executable, "-m", "balnmp_cache.cli", "doctor"]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    entries: dict[str, str] = {}
    for line in result.stdout.splitlines()[1:]:
        if match := re.match(r"(ok|warn|missing) +(.+?)(?: {2,}(.*))?$", line):
            name = match.group(2).strip()
            entries[name] = f"{match.group(1)} {match.group(3) or ''}"
        else:
            entries[name] += " " + line.strip()  # the entry's wrapped or following lines
    return entries


def test_doctor_reports_readers_weights_and_fixes():
    entries = _doctor_entries(400)
    assert entries["reader: pil"].startswith("ok")
    assert "available offline" in entries["weights: efficientnet_lite0"]
    assert "GPU" in entries
    heads = _package_heads()  # the valid values of train --head, as a fresh process registers them
    assert heads and all(name in entries["MIL heads"] for name in heads)
    if entries["timm"].startswith("missing"):
        assert "timm>=1.0.31" in entries["timm"]  # install hints survive rendering
    for name, entry in entries.items():
        if name.startswith("weights: ") and entry.startswith("warn") and "https://download.pytorch.org" in entry:
            assert "fix: download https://" in entry and ".pth to " in entry  # the URL and the path, whole
        elif name.startswith("weights: ") and entry.startswith("warn"):  # hub weights: the files, then the licence
            assert "<cache>/models--" in entry and "fix: " in entry and "hf download " in entry


def test_doctor_at_80_columns_keeps_every_url_and_path_whole():
    wide, narrow = _doctor_entries(400), _doctor_entries(80)
    assert narrow.keys() == wide.keys()
    for name, entry in wide.items():
        if name != "disk":  # free space changes between the two runs
            assert narrow[name].split() == entry.split(), name  # the same words, none split or lost


# --- the stage commands are generated from their configuration fields -------------------------------

# Every flag and argument each command had before its options were generated from the configs ...
TODAY = {
    "extract": {
        "sources", "--out", "--encoder", "--mode", "--weights", "--patch-px", "--target-mpp", "--magnification",
        "--slide-mpp", "--format", "--dtype", "--skip-errors", "--no-skip-errors", "--force", "--prefer",
        "--patch-filter", "--white-ratio-max", "--background-max", "--min-tissue", "--seed", "--precision",
        "--batch-size", "--num-workers", "--device", "--config", "-c", "--verbose", "-v",
    },
    "train": {
        "--cache", "--cohort", "--task", "--head", "--clinical", "--no-clinical", "--bag-size", "--bags-per-slide",
        "--epochs", "--seed", "--split", "--official-json", "--bags", "--device", "--precision", "--threads", "--out",
        "--config", "-c", "--verbose", "-v",
    },
    "report": {"paths", "--out", "--clinical", "--config", "-c", "--verbose", "-v"},
    "predict": {"run_dir", "sources", "--cohort", "--top-k", "--out", "--verbose", "-v"},
    "ablate": {"grid", "--out", "--verbose", "-v"},
    "nuclei": {
        "sources", "--out", "--cohort", "--segmenter", "--weights", "--shard", "--patch-px", "--target-mpp",
        "--magnification", "--slide-mpp", "--patch-filter", "--white-ratio-max", "--background-max", "--min-tissue",
        "--prefer", "--batch-size", "--num-workers", "--fallback-mpp", "--smooth-sigma-um", "--threshold",
        "--otsu-scale", "--threshold-od", "--dab-max-od", "--seed-sigma-um", "--seed-h-um", "--min-area-um2",
        "--max-area-um2", "--fill-holes", "--no-fill-holes", "--n-bins", "--min-patch-nuclei", "--bags", "--no-bags",
        "--skip-errors", "--no-skip-errors", "--force", "--no-force", "--config", "-c", "--verbose", "-v",
    },
    "heatmap": {"run_dir", "slides", "--cache", "--out", "--config", "-c", "--verbose", "-v"},
}
# ... and the ones that every remaining field brought with it.
ENGINE_FLAGS = {
    "--engine", "--address", "--workers", "--cpus-per-worker", "--num-gpus-per-worker", "--chunk-slides", "--retries",
    "--slurm-folder", "--slurm-partition", "--slurm-time", "--slurm-mem-gb", "--slurm-parallelism",
}  # fmt: skip
ADDED = {
    "extract": {"--no-force", "--slide-id-prefix", "--encoder-revision", "--decode", "--shard", *ENGINE_FLAGS},
    "train": {
        "--clinical-extra", "--batch-bags", "--patience", "--optimizer", "--lr", "--weight-decay", "--momentum", "--t0",
        "--t-mult", "--class-weights", "--no-class-weights", "--merge", "--folds", "--fold", "--splits-file",
        "--split-seed", "--force", "--no-force",
    },
    "report": {
        "--alpha", "--thresholds", "--age-cutoff", "--t-stage-cutoff-cm", "--figure-formats", "--table1-columns",
        "--nuclei", "--heatmaps", "--bootstrap", "--bootstrap-seed", "--calibration-bins", "--patients-table-runs",
    },
    "predict": set(),
    "ablate": set(ENGINE_FLAGS),
    "nuclei": set(),
    "heatmap": {
        "--cohort", "--slide-dirs", "--score", "--norm", "--contribution-norm", "--center", "--cmap",
        "--diverging-cmap", "--alpha", "--canvas-px", "--top-k", "--gallery-px", "--cohort-split", "--target-class",
        "--flat-ratio", "--geojson", "--no-geojson", "--force", "--no-force", "--device",
    },
}  # fmt: skip


def _command(name: str):
    return typer.main.get_command(app).commands[name]


def _flags(name: str) -> set[str]:
    names = set()
    for param in _command(name).params:
        names |= {param.name} if param.param_type_name == "argument" else {*param.opts, *param.secondary_opts}
    return names


def _stage(name: str):
    return next(stage for stage in STAGES if stage.name == name)


def _help_lines(command: str) -> dict[str, str]:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    entries: dict[str, str] = {}
    for line in result.output.splitlines():
        if line.startswith("  -"):
            flag = line.split()[0]
            entries[flag] = line
        elif line.startswith("    ") and entries:
            entries[flag] += " " + line.strip()  # help set under a long flag
    return entries


@pytest.mark.parametrize("command", sorted(TODAY))
def test_each_stage_command_keeps_todays_flags_and_adds_only_its_other_fields(command):
    assert TODAY[command] <= _flags(command)
    assert _flags(command) == TODAY[command] | ADDED[command]


def _literal_choices(annotation) -> tuple:
    """The values of a ``Literal`` anywhere in ``annotation`` (``Literal[...] | None``, ``list[Literal[...]]``)."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return tuple(value for arg in typing.get_args(annotation) for value in _literal_choices(arg))


def _shown_default(name: str, info) -> str | None:
    default = info.get_default(call_default_factory=True)
    if default is None or default == []:
        return None
    if isinstance(default, bool):
        return ("" if default else "no-") + name.replace("_", "-")
    if isinstance(default, list):
        return ", ".join(map(str, default))
    return str(default)


@pytest.mark.parametrize("command", sorted(TODAY))
def test_help_shows_each_fields_description_default_and_choices(command):
    stage = _stage(command)
    lines = _help_lines(command)
    options = [n for n in stage.fields.names() if n not in stage.fields.arguments]
    assert options
    for name in options:
        info = stage.fields.model.model_fields[name]
        line = lines["--" + name.replace("_", "-")]
        assert stage.fields.help.get(name, info.description) in line
        shown = _shown_default(name, info)
        assert (f"[default: {shown}]" in line) if shown else "[default:" not in line, line
        choices = _literal_choices(info.annotation)
        if choices:
            assert "<" + "|".join(choices) + ">" in line


def test_head_choices_come_from_the_registry_when_a_head_is_given():
    from balnmp_cache.mil import list_heads

    result = CliRunner().invoke(app, ["train", "--head", "gated_abmil_typo"])
    assert result.exit_code == 2
    (error,) = [line for line in result.output.splitlines() if "gated_abmil_typo" in line]
    assert "--head" in error and all(name in error for name in list_heads())


@pytest.mark.parametrize(
    ("args", "flag", "choices"),
    [
        (["extract", "--mode", "mean"], "--mode", ("avg", "max", "flatten")),
        (["train", "--split", "random"], "--split", ("bcnb", "official", "kfold")),
        (["report", "--thresholds", "0.5", "--thresholds", "0.7"], "--thresholds", ("0.5", "youden")),
    ],
)
def test_an_invalid_choice_is_one_line_naming_the_valid_ones(args, flag, choices):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert flag in error and all(repr(choice) in error for choice in choices), error


def _binary_run(directory: Path, seed: int) -> Path:
    frame = synthetic_labels(0)
    p1 = binary_scores(frame["label"].to_numpy(), strength=1.5, seed=seed)
    return write_predictions(directory, frame, np.column_stack([1 - p1, p1]), run_json=run_json(0))


def test_a_given_flag_overrides_the_config_file_and_an_unset_one_does_not(tmp_path):
    a, b = _binary_run(tmp_path / "runs" / "a", 1), _binary_run(tmp_path / "runs" / "b", 2)
    config = tmp_path / "report.toml"
    config.write_text(
        f'paths = ["{a}", "{b}"]\nout = "{tmp_path / "from_file"}"\nalpha = 0.1\nfigure_formats = ["png"]\n'
        'thresholds = ["0.5", "youden"]\n'
    )
    unset = CliRunner().invoke(app, ["report", "-c", str(config)])
    assert unset.exit_code == 0, unset.output
    resolved = tomllib.loads((tmp_path / "from_file" / "config.toml").read_text())
    assert resolved["alpha"] == 0.1 and resolved["thresholds"] == ["0.5", "youden"]
    assert resolved["paths"] == [str(a), str(b)]

    given = CliRunner().invoke(
        app, ["report", "-c", str(config), str(a), "--out", str(tmp_path / "from_flags"), "--alpha", "0.2",
              "--thresholds", "youden"],
    )  # fmt: skip
    assert given.exit_code == 0, given.output
    resolved = tomllib.loads((tmp_path / "from_flags" / "config.toml").read_text())
    assert resolved["alpha"] == 0.2 and resolved["thresholds"] == ["youden"] and resolved["paths"] == [str(a)]
    assert resolved["figure_formats"] == ["png"]  # not given: the file's value
    assert "95% CI" not in given.output and "80% CI" in given.output


@pytest.mark.parametrize(("in_file", "flag", "exit_code"), [(False, "--skip-errors", 1), (True, "--no-skip-errors", 2)])
def test_bool_flags_override_the_config_file_both_ways(tmp_path, in_file, flag, exit_code):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a JPEG")
    config = tmp_path / "extract.toml"
    config.write_text(
        f'sources = ["{broken}"]\nout = "{tmp_path / "cache"}"\nweights = "random"\nbatch_size = 4\n'
        f"skip_errors = {str(in_file).lower()}\nforce = false\n"
    )
    result = CliRunner().invoke(app, ["extract", "-c", str(config), flag, "--force"])
    assert result.exit_code == exit_code, result.output  # 1: the slide is recorded as failed; 2: the run stopped
    (resolved,) = (tmp_path / "cache").glob("*/config.toml")
    settings = tomllib.loads(resolved.read_text())
    assert settings["skip_errors"] is (not in_file) and settings["force"] is True


def test_a_field_without_a_command_line_form_must_be_excluded_by_name():
    from balnmp_cache._cli_options import FieldParameters
    from balnmp_cache.train.config import TrainConfig

    with pytest.raises(TypeError, match=r"'head_options'.*exclude"):
        FieldParameters(TrainConfig).parameters()
    with pytest.raises(ValueError, match="no field"):
        FieldParameters(TrainConfig, exclude=("head_option",)).names()


def test_the_report_config_imports_no_statistics():
    code = "import sys, balnmp_cache.report.config; print([m for m in ('numpy', 'pandas') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
