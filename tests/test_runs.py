"""The run directory contract: what write_run writes is what the readers read, old files still read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from balnmp_cache import runs
from balnmp_cache.errors import ConfigError
from balnmp_cache.train.bags import BagSet
from balnmp_cache.train.config import TrainConfig

RUN_JSON_KEYS = [  # the keys of run.json, in order, as every version has written them
    "complete", "task", "task_name", "classes", "head", "head_options", "clinical", "clinical_features", "seed",
    "cache", "cohort", "split", "bags", "bag_size", "bags_per_slide", "batch_bags", "optimizer", "best_epoch",
    "epochs_run", "best_val_auc", "metrics", "seconds", "train_seconds", "group_size", "device", "precision",
    "package_version",
]


def _scores(split: bool = True) -> runs.Scores:
    rows = np.array([[0, 1, -1], [2, 3, 4], [5, -1, -1]])  # (B, N) feature rows, -1 = padding
    bags = BagSet(rows=rows, patient=np.array([0, 0, 1]), bag=np.array([0, 1, 0]))
    return runs.Scores(
        patient_ids=["b", "a"], probs=np.array([[0.2, 0.6], [0.9, 0.1]]), n_bags=np.array([2, 1]), bags=bags,
        attention=np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]),
        patch_key=np.array([f"k{i}" for i in range(6)], dtype=object), coords=np.arange(12).reshape(6, 2),
        split=np.array(["test", "train"], dtype=object) if split else None, labels=np.array([1, 0]) if split else None,
    )


def _write(run_dir):
    record = runs.RunRecord(task=0, task_name="N0 vs N(+)", classes=("N0", "N(+)"), head="mean", clinical=False,
                            seed=3, cache={"encoder": "synthetic", "random_weights": True}, metrics={"test": {"n": 1}})
    checkpoint = runs.Checkpoint(head="mean", head_options={"dropout": 0.1}, in_dim=4, n_classes=2, clinical_dim=0,
                                 classes=("N0", "N(+)"), task=0, task_name="N0 vs N(+)",
                                 state_dict={"w": torch.arange(3.0)}, clinical_encoder=None, bag_size=10)
    curves = [{"epoch": 1, "lr": 1e-4, "train_loss": 0.5, "train_auc": None, "val_loss": float("nan"), "val_auc": 0.75,
               "best": 1, "seconds": 0.1}]
    runs.start_run(run_dir)
    return runs.write_run(run_dir, config=TrainConfig(out=run_dir), record=record, checkpoint=checkpoint,
                          curves=curves, scores=_scores()), record


def test_a_written_run_reads_back_and_is_finished(tmp_path):
    files, record = _write(tmp_path / "run")
    every_file = (files.config, files.run_json, files.checkpoint, files.curves, files.attention, files.predictions)
    assert sorted(p.name for p in files.root.iterdir()) == sorted(p.name for p in every_file)
    assert runs.is_finished(files.root) and runs.has_checkpoint(files.root)
    assert list(json.loads(files.run_json.read_text())) == RUN_JSON_KEYS
    assert runs.read_run(files.root) == record
    ckpt = runs.read_checkpoint(files.root)
    assert ckpt.head_options == {"dropout": 0.1} and ckpt.classes == ("N0", "N(+)") and ckpt.merge == "mean"
    assert torch.equal(ckpt.state_dict["w"], torch.arange(3.0))
    pred = runs.read_predictions(files.root)
    assert list(pred.columns) == ["patient_id", "split", "label", "n_bags", "p_0", "p_1"]
    assert pred["patient_id"].tolist() == ["a", "b"]  # train before test
    np.testing.assert_allclose(pred.loc[1, ["p_0", "p_1"]].to_numpy(float), [0.25, 0.75])  # renormalised
    att = runs.read_attention(files.root)
    assert list(att.columns) == ["patient_id", "split", "bag", "patch_key", "x", "y", "attention"]
    assert len(att) == 6 and att["patch_key"].tolist() == [f"k{i}" for i in range(6)]
    curves = runs.read_curves(files.root)
    assert list(curves.columns) == list(runs.CURVE_COLUMNS) and np.isnan(curves.loc[0, "val_loss"])


def test_scores_outside_a_run_have_no_split_or_label(tmp_path):
    runs.write_scores(tmp_path, _scores(split=False))
    pred = runs.read_predictions(tmp_path)
    assert list(pred.columns) == ["patient_id", "n_bags", "p_0", "p_1"] and pred["patient_id"].tolist() == ["b", "a"]
    assert "split" not in runs.read_attention(tmp_path).columns


def test_an_older_run_json_reads_with_defaults(tmp_path):
    old = {"complete": True, "task": 3, "classes": ["N0", "N+(1-2)"], "head": "balnmp", "clinical": "only",
           "cache": {"encoder": "vgg16_bn"}, "group_size": 4, "something_new": 1}  # no precision, cohort, ...
    runs.run_files(tmp_path).run_json.write_text(json.dumps(old))
    record = runs.read_run(tmp_path)
    assert (record.task, record.classes, record.clinical, record.precision) == (3, ("N0", "N+(1-2)"), "only", None)
    assert record.metrics == {} and record.clinical_features == ()
    assert not runs.is_finished(tmp_path)  # no predictions.csv


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ("[1, 2]", "must hold a JSON object"),
     ('{"task": "zero"}', "'task' must be an integer"), ('{"classes": "N0"}', "'classes' must be a list")],
)
def test_a_bad_run_json_names_the_file(tmp_path, text, message):
    path = runs.run_files(tmp_path).run_json
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        runs.read_run(tmp_path)
    assert str(path) in str(info.value)
    assert not runs.is_finished(tmp_path)


def test_unfinished_runs_and_foreign_checkpoints(tmp_path):
    files, _ = _write(tmp_path / "run")
    json_text = files.run_json.read_text()
    files.run_json.write_text(json_text.replace('"complete": true', '"complete": false'))
    assert not runs.is_finished(files.root)
    files.run_json.unlink()
    assert not runs.is_finished(files.root) and runs.has_checkpoint(files.root)
    with pytest.raises(ConfigError, match=r"run\.json is missing"):
        runs.read_run(files.root)
    torch.save({"state": 1}, files.checkpoint)
    with pytest.raises(ConfigError, match="not a balnmp-cache run checkpoint"):
        runs.read_checkpoint(files.root)
    with pytest.raises(ConfigError, match=r"checkpoint\.pt is missing"):
        runs.read_checkpoint(tmp_path / "elsewhere")


def test_starting_a_run_removes_the_outputs_of_an_earlier_one(tmp_path):
    files, _ = _write(tmp_path / "run")
    runs.start_run(files.root)
    assert sorted(p.name for p in files.root.iterdir()) == sorted([files.config.name, files.checkpoint.name])
    assert not runs.is_finished(files.root)
