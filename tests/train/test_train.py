"""Training end to end on a real (synthetic) cache: learning, selection, determinism, run directory, official replay."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from balnmp_cache.cohort import load_official_bags
from balnmp_cache.train import run_train

from .conftest import train_config


@pytest.fixture(scope="module")
def trained(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "balnmp_clinical"
    return run_train(train_config(study, out))


def _predictions(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "predictions.csv", dtype={"patient_id": str})


def test_planted_signal_is_learned(trained):
    assert trained.metrics["val"]["auc"] > 0.85
    assert trained.metrics["test"]["auc"] > 0.85
    assert 1 <= trained.best_epoch <= trained.epochs_run == 6


def test_run_directory_contents_and_predictions_format(trained, study):
    run_dir = trained.run_dir
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.toml", "run.json", "checkpoint.pt", "curves.csv", "attention.csv", "predictions.csv"} <= names
    assert not [n for n in names if n.startswith(".")], "temporary files left behind"

    pred = _predictions(run_dir)
    assert list(pred.columns) == ["patient_id", "split", "label", "n_bags", "p_0", "p_1"]
    assert sorted(pred["patient_id"], key=int) == study.patient_ids  # one row per patient
    np.testing.assert_allclose(pred[["p_0", "p_1"]].sum(axis=1), 1.0, atol=1e-6)
    counts = dict(zip(study.patient_ids, study.n_patches, strict=True))
    assert all(n == max(1, counts[p] // 10) for p, n in zip(pred["patient_id"], pred["n_bags"], strict=True))
    cohort = pd.read_csv(study.cohort_csv, dtype={"patient_id": str}).set_index("patient_id")
    assert (pred.set_index("patient_id")["split"] == cohort.loc[pred["patient_id"], "split"]).all()
    labels = cohort.loc[pred["patient_id"], "ALN status"].ne("N0").astype(int).to_numpy()
    assert (pred["label"].to_numpy() == labels).all()
    assert list(pred["split"].drop_duplicates()) == ["train", "val", "test"]

    info = json.loads((run_dir / "run.json").read_text())
    assert info["complete"] is True
    assert {k: info[k] for k in ("task", "task_name", "classes", "head", "clinical", "seed")} == {
        "task": 0, "task_name": "N0 vs N(+)", "classes": ["N0", "N(+)"], "head": "balnmp", "clinical": True, "seed": 0}
    assert {"encoder", "weights", "random_weights", "cache_key", "directory"} <= set(info["cache"])
    assert info["cache"]["encoder"] == "synthetic" and info["cache"]["random_weights"] is True
    assert info["best_epoch"] == trained.best_epoch

    curves = pd.read_csv(run_dir / "curves.csv")
    assert list(curves.columns) == ["epoch", "lr", "train_loss", "train_auc", "val_loss", "val_auc", "best", "seconds"]
    assert curves["epoch"].tolist() == list(range(1, 7))
    assert curves["lr"].iloc[0] == pytest.approx(2e-3) and curves["lr"].iloc[1] < curves["lr"].iloc[0]
    # selected on validation AUC, ties broken by the lower validation loss
    ranked = curves.sort_values(["val_auc", "val_loss"], ascending=[False, True], kind="stable")
    assert ranked["epoch"].iloc[0] == trained.best_epoch

    att = pd.read_csv(run_dir / "attention.csv", dtype={"patient_id": str})
    assert list(att.columns) == ["patient_id", "split", "bag", "patch_key", "x", "y", "attention"]
    assert set(att["patient_id"]) == set(study.patient_ids)
    np.testing.assert_allclose(att.groupby(["patient_id", "bag"])["attention"].sum(), 1.0, atol=1e-5)
    assert att["patch_key"].str.startswith("patches/").all()
    assert len(att) == sum(min(n, max(1, n // 10) * 10) for n in study.n_patches)

    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["head"] == "balnmp" and ckpt["in_dim"] == 8 and ckpt["clinical_dim"] == 5
    assert ckpt["clinical_encoder"]["names"][0] == "age"


def test_same_seed_gives_identical_predictions_and_another_seed_does_not(trained, study, tmp_path):
    again = run_train(train_config(study, tmp_path / "again"))
    assert (again.run_dir / "predictions.csv").read_bytes() == (trained.run_dir / "predictions.csv").read_bytes()
    assert (again.run_dir / "attention.csv").read_bytes() == (trained.run_dir / "attention.csv").read_bytes()
    other = run_train(train_config(study, tmp_path / "other", seed=1))
    assert (other.run_dir / "predictions.csv").read_bytes() != (trained.run_dir / "predictions.csv").read_bytes()


def test_model_selection_never_looks_at_test_labels(trained, study, tmp_path):
    cohort = pd.read_csv(study.cohort_csv, dtype={"patient_id": str})
    test = cohort["split"] == "test"
    cohort.loc[test, "ALN status"] = cohort.loc[test, "ALN status"].map(lambda s: "N+(>2)" if s == "N0" else "N0")
    scrambled = tmp_path / "scrambled.csv"
    cohort.to_csv(scrambled, index=False)
    result = run_train(train_config(study, tmp_path / "scrambled", cohort=scrambled))
    assert result.best_epoch == trained.best_epoch
    drop = ["seconds"]
    assert pd.read_csv(result.run_dir / "curves.csv").drop(columns=drop).equals(
        pd.read_csv(trained.run_dir / "curves.csv").drop(columns=drop))
    a, b = _predictions(result.run_dir), _predictions(trained.run_dir)
    assert a[["p_0", "p_1"]].equals(b[["p_0", "p_1"]])
    assert (a["label"] != b["label"]).sum() == int(test.sum())
    assert result.metrics["test"]["auc"] < 0.2  # the scrambled labels are really scrambled


def test_runs_sharing_loaded_data_match_runs_that_load_their_own(trained, study, tmp_path):
    from balnmp_cache.cache import load_cache
    from balnmp_cache.cohort import load_cohort
    from balnmp_cache.train.engine import FeatureSource

    cache, cohort = load_cache(study.cache_dir), load_cohort(study.cohort_csv)
    source = FeatureSource(cache.features, torch.device("cpu"))
    shared = [
        run_train(train_config(study, tmp_path / name, **kw), cache=cache, cohort=cohort, source=source)
        for name, kw in (("s_image", {"clinical": False}), ("s_clinical", {}), ("s_only", {"head": "clinical_only"}))
    ]
    assert [r.clinical for r in shared] == [False, True, "only"]
    shared_bytes = (tmp_path / "s_clinical" / "predictions.csv").read_bytes()
    assert shared_bytes == (trained.run_dir / "predictions.csv").read_bytes()
    alone = run_train(train_config(study, tmp_path / "a_image", clinical=False))
    assert (alone.run_dir / "predictions.csv").read_bytes() == (tmp_path / "s_image" / "predictions.csv").read_bytes()
    info = json.loads((tmp_path / "s_only" / "run.json").read_text())
    assert info["clinical"] == "only" and info["group_size"] == 1


def test_three_class_task_with_max_merge_and_class_weights(study, tmp_path):
    result = run_train(train_config(study, tmp_path / "t2", task=2, merge="max", class_weights=True, head="abmil",
                                    clinical=False, bags_per_slide=2, epochs=3))
    pred = _predictions(result.run_dir)
    assert list(pred.columns[-3:]) == ["p_0", "p_1", "p_2"]
    np.testing.assert_allclose(pred[["p_0", "p_1", "p_2"]].sum(axis=1), 1.0, atol=1e-6)
    assert set(pred["label"]) == {0, 1, 2}
    assert result.task_name == "N0 vs N+(1-2) vs N+(>2)"


def _write_official(study, folder: Path, task: int = 0) -> dict[str, list[list[str]]]:
    """Official-style JSON bag files built from the study's patch keys (disjoint bags of 10, leftovers dropped)."""
    cohort = pd.read_csv(study.cohort_csv, dtype={"patient_id": str})
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    bags: dict[str, list[list[str]]] = {}
    entries: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for pid, n, status, split in zip(study.patient_ids, study.n_patches, study.status, cohort["split"], strict=True):
        keys = [f"patches/{pid}/{pid}_0_{(i % 50) * 256}_{(i // 50) * 256}.jpg" for i in range(n)]
        keys = [keys[i] for i in rng.permutation(n)]
        m = max(1, n // 10)
        bags[pid] = [keys[j * 10 : (j + 1) * 10] for j in range(m)]
        for bag in bags[pid]:
            entries[split].append({"id": pid, "label": str(int(status != "N0")), "patch_paths": bag})
    for split, items in entries.items():
        (folder / f"{split}-type-{task}.json").write_text(json.dumps(items))
    return bags


def test_official_bags_are_replayed_through_patch_keys(study, tmp_path):
    expected = _write_official(study, tmp_path / "json")
    assert load_official_bags(tmp_path / "json", 0).bags == expected
    result = run_train(train_config(study, tmp_path / "official", bags="official", split="official",
                                    official_json=tmp_path / "json", epochs=2))
    att = pd.read_csv(result.run_dir / "attention.csv", dtype={"patient_id": str})
    for pid in ("1", "2", "17"):
        mine = att[att["patient_id"] == pid]
        got = [sorted(g["patch_key"]) for _, g in mine.groupby("bag")]
        assert got == [sorted(b) for b in expected[pid]]
    with open(result.run_dir / "predictions.csv", newline="") as fh:
        n_bags = {row["patient_id"]: int(row["n_bags"]) for row in csv.DictReader(fh)}
    assert all(n_bags[p] == len(expected[p]) for p in expected)


def test_clinical_only_head_is_a_converged_weighted_logistic_regression(study, tmp_path):
    from sklearn.linear_model import LogisticRegression

    from balnmp_cache.cohort import fit_clinical, load_cohort

    result = run_train(train_config(study, tmp_path / "clin", head="clinical_only", weight_decay=0.0))
    assert (result.best_epoch, result.epochs_run) == (1, 1)
    cohort = load_cohort(study.cohort_csv)
    table = cohort.table
    train_ids = [p for p in study.patient_ids if table.at[p, "split"] == "train"]
    x = fit_clinical(table, train_ids).transform(table, study.patient_ids)
    y = (table.loc[study.patient_ids, "aln_status"] != "N0").astype(int).to_numpy()
    bags = np.maximum(study.n_patches // 10, 1)
    train = np.array([study.patient_ids.index(p) for p in train_ids])
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=100_000)
    reference.fit(x[train], y[train], sample_weight=bags[train])
    pred = _predictions(result.run_dir).set_index("patient_id").loc[study.patient_ids]
    np.testing.assert_allclose(pred["p_1"], reference.predict_proba(x)[:, 1], atol=2e-3)


def test_bf16_on_the_cpu_learns_and_is_deterministic(study, tmp_path):
    a = run_train(train_config(study, tmp_path / "a", precision="bf16", clinical=False))
    b = run_train(train_config(study, tmp_path / "b", precision="bf16", clinical=False))
    assert a.metrics["val"]["auc"] > 0.85
    assert (a.run_dir / "predictions.csv").read_bytes() == (b.run_dir / "predictions.csv").read_bytes()


def test_kfold_splits_are_written_once_and_reused(study, tmp_path):
    splits = tmp_path / "folds.csv"
    kfold = {"split": "kfold", "folds": 4, "splits_file": splits, "epochs": 1}
    first = run_train(train_config(study, tmp_path / "f0", fold=0, **kfold))
    written = splits.read_bytes()
    second = run_train(train_config(study, tmp_path / "f1", fold=1, optimizer="sgd", **kfold))
    assert splits.read_bytes() == written
    a, b = _predictions(first.run_dir).set_index("patient_id"), _predictions(second.run_dir).set_index("patient_id")
    assert set(a.index) == set(b.index) == set(study.patient_ids)
    assert set(a.index[a["split"] == "val"]) == set(b.index[b["split"] == "test"])  # fold 1 is val of 0, test of 1
    assert sum(first.metrics[s]["n"] for s in ("train", "val", "test")) == len(study.patient_ids)


def test_early_stopping_after_patience_epochs_without_improvement(study, tmp_path):
    result = run_train(train_config(study, tmp_path / "frozen", lr=1e-12, epochs=40, patience=3, clinical=False))
    assert (result.best_epoch, result.epochs_run) == (1, 4)  # nothing learns: no validation epoch beats the first
    curves = pd.read_csv(result.run_dir / "curves.csv")
    assert curves["best"].tolist() == [1, 0, 0, 0]
    assert curves["val_auc"].nunique() == 1


def test_a_finished_run_is_kept_unless_forced_and_an_unfinished_one_replaced(study, tmp_path):
    from balnmp_cache import runs

    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.toml", "checkpoint.pt", "predictions.csv"):  # an interrupted run: no run.json
        (run / name).write_text("old")
    first = run_train(train_config(study, run, epochs=1, clinical=False))
    assert runs.is_finished(run) and (run / "checkpoint.pt").read_text(errors="replace") != "old"
    written = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(runs.RunExistsError, match="pass --force"):
        run_train(train_config(study, run, epochs=1, clinical=False, seed=1))
    assert {p.name: p.read_bytes() for p in run.iterdir()} == written
    again = run_train(train_config(study, run, epochs=1, clinical=False, seed=1, force=True))
    assert again.run_dir == first.run_dir and runs.read_run(run).seed == 1
    assert "force = false" in (run / "config.toml").read_text()  # a saved config never forces
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock", "run"]
