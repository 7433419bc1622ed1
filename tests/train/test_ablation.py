"""Ablation grids: validation, expansion with clinical-only deduplication, shared training, resume, tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from balnmp_cache.cli import app
from balnmp_cache.config import load_config
from balnmp_cache.errors import ConfigError
from balnmp_cache.runs import read_predictions
from balnmp_cache.train import AblationGrid, expand_grid, run_ablation, run_train

STAGES = Path(__file__).resolve().parents[2] / "stages" / "ablations"


def _grid(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def _study_grid(path: Path, study, out: Path, grid: str, base: str = "epochs = 2\nlr = 2e-3\n") -> Path:
    """A grid file training on the synthetic ``study`` on one CPU thread; ``base`` and ``grid`` are TOML lines."""
    return _grid(path, f"""
out = "{out}"
[base]
cohort = "{study.cohort_csv}"
cache = "{study.cache_dir}"
batch_bags = 16
threads = 1
device = "cpu"
{base}
[grid]
{grid}
""")


def test_expansion_crosses_axes_and_runs_clinical_only_once_per_remaining_axis(tmp_path):
    (tmp_path / "c1").mkdir()
    (tmp_path / "c2").mkdir()
    grid = load_config(AblationGrid, _grid(tmp_path / "g.toml", f"""
out = "{tmp_path / 'abl'}"
[base]
cohort = "cohort.csv"
epochs = 3
[grid]
cache = ["{tmp_path / 'c1'}", "{tmp_path / 'c2'}"]
head = ["balnmp", "mean"]
variant = ["image", "image_clinical", "clinical_only"]
bags_per_slide = ["auto", 4]
seed = [0, 1]
"""))
    runs = expand_grid(grid)
    # caches x heads x image variants x M x seeds, + clinical-only per M x seed
    assert len(runs) == 2 * 2 * 2 * 2 * 2 + 2 * 2
    assert len({r.name for r in runs}) == len(runs)
    only = [r for r in runs if r.variant == "clinical_only"]
    assert len(only) == 4
    assert all(r.config.head == "clinical_only" and r.config.clinical for r in only)
    assert all(r.config.cache == tmp_path / "c1" for r in only)
    image = [r for r in runs if r.variant == "image"]
    assert all(not r.config.clinical for r in image)
    assert {r.config.bags_per_slide for r in runs} == {None, 4}
    assert all(r.config.out == tmp_path / "abl" / "runs" / r.name for r in runs)
    assert [r.name for r in expand_grid(grid)] == [r.name for r in runs]  # stable names: resume finds them
    assert [r.name for r in expand_grid(grid, out=tmp_path / "elsewhere")] == [r.name for r in runs]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[grid]\nlearning_rate = [1e-3]\n', "unknown key 'grid.learning_rate'"),
        ('[base]\nvariant = "image"\n', "unknown key 'base.variant'"),
        ('[base]\nout = "x"\n', "unknown key 'base.out'"),
        ('[grid]\nvariant = ["text_only"]\n', "unknown variant"),
        ('[grid]\nvariant = ["image"]\nclinical = [true]\n', "either grid.variant or clinical"),
        ('[grid]\nseed = []\n', "empty list"),
        ('outt = "x"\n', "unknown key 'outt'"),
    ],
)
def test_invalid_grids_name_the_key(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_config(AblationGrid, _grid(tmp_path / "g.toml", body))


def test_invalid_combination_names_its_values(tmp_path):
    grid = load_config(AblationGrid, _grid(tmp_path / "g.toml", '[grid]\ntask = [0, 9]\n'))
    with pytest.raises(ConfigError, match=r"grid combination \(task=9\).*task"):
        expand_grid(grid)


def test_shipped_grids_expand():
    demo = expand_grid(load_config(AblationGrid, STAGES / "demo.toml"))
    assert len(demo) == (3 * 2 + 1) * 2
    paper = expand_grid(load_config(AblationGrid, STAGES / "paper.toml"))
    assert len(paper) == 3 * (5 * 2 + 1) * 3  # tasks x (encoders x image variants + clinical-only) x seeds
    assert {r.config.task for r in paper} == {0, 3, 4}


class Interrupt(Exception):
    pass


def test_ablation_resumes_without_redoing_finished_runs(study, tmp_path):
    grid = _study_grid(tmp_path / "g.toml", study, tmp_path / "abl",
                       'head = ["balnmp", "mean"]\nvariant = ["image", "clinical_only"]\nseed = [0, 1]')
    events = []

    def stop_after_three_runs(event):
        events.append(event)
        if event.task == "runs" and event.kind == "advance" and len([e for e in events if e.kind == "advance"
                                                                        and e.task == "runs"]) == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_ablation(load_config(AblationGrid, grid), progress=stop_after_three_runs)
    runs_dir = tmp_path / "abl" / "runs"
    finished = sorted(p for p in runs_dir.iterdir() if (p / "run.json").is_file())
    assert len(finished) == 3  # three runs finished before the interruption
    stamps = {p.name: (p / "predictions.csv").stat().st_mtime_ns for p in finished}

    result = run_ablation(load_config(AblationGrid, grid))
    assert (result.n_runs, result.n_done_before) == (6, 3)
    assert all((runs_dir / name / "predictions.csv").stat().st_mtime_ns == t for name, t in stamps.items())
    runs = pd.read_csv(tmp_path / "abl" / "runs.csv")
    assert len(runs) == 6 and runs["val_auc"].notna().all() and runs["test_auc"].notna().all()
    results = pd.read_csv(result.csv_path)
    assert result.csv_path == tmp_path / "abl" / "results.csv"
    assert len(results) == 3 and (results["n_seeds"] == 2).all()
    assert set(results["variant"]) == {"image", "clinical_only"}
    assert (results.loc[results["variant"] == "clinical_only", "encoder"] == "-").all()
    assert len(result.summary_rows) == 3 and "±" in result.summary_rows[0]["val AUC"]
    assert set(result.summary_columns) >= {"head", "variant", "val AUC", "test AUC"}
    assert (tmp_path / "abl" / "ablation.toml").is_file()

    again = run_ablation(load_config(AblationGrid, grid))
    assert again.n_done_before == 6


def test_a_grid_run_equals_the_same_configuration_trained_alone(study, tmp_path):
    grid = _study_grid(tmp_path / "g.toml", study, tmp_path / "abl", 'variant = ["image", "image_clinical"]')
    result = run_ablation(load_config(AblationGrid, grid))
    assert result.n_runs == 2
    for run in expand_grid(load_config(AblationGrid, grid)):  # the features and the source were shared by the grid
        alone = run_train(run.config.model_copy(update={"out": tmp_path / "alone" / run.name}))
        assert (alone.run_dir / "predictions.csv").read_bytes() == (run.config.out / "predictions.csv").read_bytes()
    shutil.rmtree(tmp_path / "abl")


def test_kfold_grid_over_split_seeds_trains_each_on_its_own_splits(study, tmp_path):
    grid = _study_grid(tmp_path / "g.toml", study, tmp_path / "abl", "split_seed = [0, 1]",
                       base='split = "kfold"\nepochs = 1')
    run_ablation(load_config(AblationGrid, grid))
    runs_dir = tmp_path / "abl" / "runs"
    splits = sorted(runs_dir.glob("splits-*.csv"))
    assert [p.name for p in splits] == ["splits-task0-k5-splitseed0.csv", "splits-task0-k5-splitseed1.csv"]
    assert splits[0].read_bytes() != splits[1].read_bytes()
    first, second = (read_predictions(r.config.out) for r in expand_grid(load_config(AblationGrid, grid)))
    test_patients = [set(p.loc[p["split"] == "test", "patient_id"]) for p in (first, second)]
    assert test_patients[0] != test_patients[1]
    assert not first[["patient_id", "p_1"]].equals(second[["patient_id", "p_1"]])


def test_the_removed_group_key_is_one_clear_error(tmp_path):
    path = _grid(tmp_path / "g.toml", 'group = true\n[grid]\nseed = [0]\n')
    with pytest.raises(ConfigError) as info:
        load_config(AblationGrid, path)
    message = str(info.value)
    assert "'group' was removed" in message and "delete the line" in message and "\n" not in message
    result = CliRunner().invoke(app, ["ablate", str(path)])
    assert result.exit_code == 2 and "'group' was removed" in result.output and "Traceback" not in result.output
