"""Seeds, cross-validation, adjusted p-values and training flags on real run folders written by the test."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tomli_w
from sklearn.metrics import roc_auc_score

from balnmp_cache.report import ReportConfig, run_report
from balnmp_cache.report.binary import evaluate_binary
from balnmp_cache.report.multiplicity import benjamini_hochberg, holm
from balnmp_cache.report.predictions import load_runs
from balnmp_cache.report.replicates import crossval_records, find_replicates, seed_records
from balnmp_cache.report.training import read_training

from .conftest import binary_scores, run_json, synthetic_labels, write_predictions

BASE = {"task": 0, "head": "balnmp", "clinical": False, "bag_size": 10, "epochs": 16, "lr": 1e-4, "folds": 3}


def _run(directory, frame, *, seed, strength=1.5, score_seed=None, **config):
    p1 = binary_scores(frame["label"].to_numpy(), strength=strength, seed=seed if score_seed is None else score_seed)
    write_predictions(directory, frame, np.column_stack([1 - p1, p1]), run_json={**run_json(0), "seed": seed})
    full = {**BASE, "split": "bcnb", "fold": 0, "split_seed": 0, **config, "seed": seed, "out": str(directory)}
    (directory / "config.toml").write_text(tomli_w.dumps(full), encoding="utf-8")
    return directory


def _kfold_frames(n=60, k=3, split_seed=0):
    """One frame per fold: the fold's patients are test, the next fold's val, the rest train."""
    labels = synthetic_labels(0, {"train": n // 3, "val": n // 3, "test": n - 2 * (n // 3)})
    rng = np.random.default_rng(split_seed)
    fold_of = rng.permutation(np.arange(n) % k)
    frames = []
    for f in range(k):
        frame = labels.copy()
        frame["split"] = np.where(fold_of == f, "test", np.where(fold_of == (f + 1) % k, "val", "train"))
        frames.append(frame)
    return frames


def test_holm_and_bh_match_their_definitions():
    raw = [0.01, 0.04, 0.03, 0.005, None]
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") and "BH"
    assert holm(raw) == pytest.approx([0.03, 0.06, 0.06, 0.02, None])
    assert benjamini_hochberg(raw) == pytest.approx([0.02, 0.04, 0.04, 0.02, None])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and benjamini_hochberg([]) == []


def _grid(tmp_path):
    """Three seeds of one model, another head, and a 3-fold cross-validation repeated twice."""
    frame = synthetic_labels(0)
    seeds = [_run(tmp_path / "runs" / f"image-seed{s}", frame, seed=s) for s in (0, 1, 2)]
    other = _run(tmp_path / "runs" / "other-seed0", frame, seed=0, head="abmil")
    folds = []
    for split_seed in (0, 1):
        for f, fold_frame in enumerate(_kfold_frames(split_seed=split_seed)):
            folds.append(_run(tmp_path / "runs" / f"cv-fold{f}-splitseed{split_seed}-seed0", fold_frame, seed=0,
                              score_seed=10 + f, split="kfold", fold=f, split_seed=split_seed))
    return seeds, other, folds


def test_seed_groups_give_mean_sd_min_max_and_kfold_pools_out_of_fold_predictions(tmp_path):
    seeds, other, folds = _grid(tmp_path)
    runs = load_runs([*seeds, other, *folds])
    metrics, _ = evaluate_binary(runs, rules=["0.5"])
    groups = find_replicates(runs)

    aucs = [r["auc"] for r in metrics if r["run"].startswith("image-seed") and r["split"] == "test"]
    records = seed_records(groups, metrics, rule="0.5")
    auc = next(r for r in records if r["group"] == "image" and r["metric"] == "auc")
    assert auc["n"] == 3 and auc["seeds"] == [0, 1, 2]
    assert auc["mean"] == pytest.approx(np.mean(aucs)) and auc["sd"] == pytest.approx(np.std(aucs, ddof=1))
    assert (auc["min"], auc["max"]) == (min(aucs), max(aucs))
    assert not any(r["group"].startswith("other") for r in records)  # another head is not a seed replicate

    crossval = crossval_records(groups, metrics)
    assert [(r["split_seed"], r["folds"]) for r in crossval] == [(0, [0, 1, 2]), (1, [0, 1, 2])]
    for record in crossval:
        members = [r for r in runs if f"splitseed{record['split_seed']}" in r.name]
        pooled = pd.concat([r.split_frame("test") for r in members])
        assert record["pooled"]["n"] == 60 and pooled["patient_id"].is_unique
        assert record["pooled"]["auc"] == pytest.approx(roc_auc_score(pooled["label"], pooled["p_1"]))
        fold_aucs = [roc_auc_score(r.labels("test"), r.scores("test")) for r in members]
        assert record["fold_auc"]["mean"] == pytest.approx(np.mean(fold_aucs))
        assert record["fold_auc"]["se"] == pytest.approx(np.std(fold_aucs, ddof=1) / np.sqrt(3))


def test_report_of_a_grid_writes_seeds_crossval_and_provenance(tmp_path):
    seeds, other, folds = _grid(tmp_path)
    config = ReportConfig(paths=[*seeds, other, *folds[:3]], out=tmp_path / "report", bootstrap=20,
                          figure_formats=["png"], thresholds=["0.5"])
    result = run_report(config, command="balnmp-cache report runs/*/")
    assert result.seeds and result.crossval
    # folds hold other test patients by design: compared neither with each other nor with the bcnb runs
    assert {c["run_a"] for c in result.comparisons} | {c["run_b"] for c in result.comparisons} == {
        "image-seed0", "image-seed1", "image-seed2", "other-seed0"}
    assert all(c["p_holm"] >= c["p_value"] and c["p_bh"] >= c["p_value"] for c in result.comparisons)
    out = tmp_path / "report"
    assert {"seeds.csv", "crossval.csv", "provenance.json", "patients.csv"} <= {p.name for p in out.iterdir()}
    html = (out / "report.html").read_text()
    assert "Cross-validation" in html and "Runs grouped over seeds" in html and "p (Holm)" in html
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["version"] and provenance["command"] == "balnmp-cache report runs/*/"
    assert provenance["runs"][0]["config"]["seed"] == 0
    patients = pd.read_csv(out / "patients.csv", dtype={"patient_id": str})
    pairs = {(str(p), s) for path in config.paths
             for p, s in pd.read_csv(path / "predictions.csv")[["patient_id", "split"]].itertuples(index=False)}
    assert len(patients) == len(pairs)  # one row per patient and split, every run's score beside
    row = patients[(patients["patient_id"] == "1") & (patients["split"] == "train")].iloc[0]
    frame = pd.read_csv(seeds[1] / "predictions.csv", dtype={"patient_id": str}).set_index(["patient_id", "split"])
    assert row["image-seed1"] == pytest.approx(frame.loc[("1", "train"), "p_1"])


def test_an_incomplete_cross_validation_says_it_misses_patients(tmp_path):
    frames = _kfold_frames()
    paths = [_run(tmp_path / f"cv-fold{f}", frames[f], seed=0, score_seed=f, split="kfold", fold=f) for f in (0, 1)]
    records = crossval_records(find_replicates(load_runs(paths)), [])
    assert records[0]["pooled"]["n"] == 40 and "2 of 3 folds finished" in records[0]["notes"][0]


def test_training_flags_an_early_selection_on_a_tiny_validation_split(tmp_path):
    frame = synthetic_labels(0, {"train": 40, "val": 12, "test": 20})
    folder = _run(tmp_path / "run", frame, seed=0)
    record = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**record, "complete": True, "best_epoch": 1, "epochs_run": 16}))
    epochs = np.arange(1, 17)
    pd.DataFrame({"epoch": epochs, "train_loss": 0.7 - epochs / 100, "val_loss": 0.7 - epochs / 200,
                  "val_auc": 0.8 - epochs / 100, "best": epochs == 1}).to_csv(folder / "curves.csv", index=False)
    (item,) = read_training(load_runs([folder]))
    assert (item.best_epoch, item.epochs_run, item.n_val) == (1, 16, 12)
    assert len(item.notes) == 2 and "epoch 1 of 16" in item.notes[0] and "12 patients" in item.notes[1]
    result = run_report(ReportConfig(paths=[folder], out=tmp_path / "report", bootstrap=20))
    assert any("epoch 1 of 16" in w for w in result.warnings)
    assert (tmp_path / "report" / "training_task0.png").is_file()
