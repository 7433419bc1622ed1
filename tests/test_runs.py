"""The run directory contract: what write_run writes is what the readers read, old files still read."""

from __future__ import annotations

import json
import os

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


def _parts():
    record = runs.RunRecord(task=0, task_name="N0 vs N(+)", classes=("N0", "N(+)"), head="mean", clinical=False,
                            seed=3, cache={"encoder": "synthetic", "random_weights": True}, metrics={"test": {"n": 1}})
    checkpoint = runs.Checkpoint(head="mean", head_options={"dropout": 0.1}, in_dim=4, n_classes=2, clinical_dim=0,
                                 classes=("N0", "N(+)"), task=0, task_name="N0 vs N(+)",
                                 state_dict={"w": torch.arange(3.0)}, clinical_encoder=None, bag_size=10)
    curves = [{"epoch": 1, "lr": 1e-4, "train_loss": 0.5, "train_auc": None, "val_loss": float("nan"), "val_auc": 0.75,
               "best": 1, "seconds": 0.1}]
    return {"config": TrainConfig(), "record": record, "checkpoint": checkpoint, "curves": curves, "scores": _scores()}


def _write(run_dir):
    parts = _parts()
    return runs.write_run(run_dir, **parts), parts["record"]


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


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_claimed_run_is_built_beside_and_swapped_in_whole(tmp_path):
    run_dir = tmp_path / "run"
    with runs.claim_run(run_dir) as staged:
        assert staged.target == run_dir.absolute() and staged.staging.parent == tmp_path
        assert staged.staging.name.startswith(".run.tmp-") and not run_dir.exists()
        runs.write_run(staged.staging, **_parts())
        staged.commit()
    assert runs.is_finished(run_dir) and _names(tmp_path) == [".run.lock", "run"]


def test_a_finished_run_is_refused_without_force_and_replaced_with_it(tmp_path):
    files, _ = _write(tmp_path / "run")
    before = {p.name: p.read_bytes() for p in files.root.iterdir()}
    with pytest.raises(runs.RunExistsError, match=r"already holds a finished run .*pass --force"), \
            runs.claim_run(files.root):
        pass
    with runs.claim_run(files.root, force=True):  # claimed but not committed: nothing changes
        pass
    assert {p.name: p.read_bytes() for p in files.root.iterdir()} == before
    with runs.claim_run(files.root, force=True) as staged:
        (staged.staging / "run.json").write_text("{}")
        staged.commit()
    assert _names(files.root) == ["run.json"] and _names(tmp_path) == [".run.lock", "run"]


def test_an_unfinished_run_is_replaced_and_a_folder_of_other_files_refused(tmp_path):
    files, _ = _write(tmp_path / "run")
    files.run_json.unlink()  # what an interrupted older version left: a checkpoint without run.json
    with runs.claim_run(files.root) as staged:
        staged.commit()
    assert _names(files.root) == []
    (files.root / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"is not a run directory: it holds notes\.txt"), \
            runs.claim_run(files.root, force=True):
        pass
    assert _names(files.root) == ["notes.txt"]


def test_a_second_writer_is_busy_and_leftovers_of_dead_writers_go(tmp_path):
    from balnmp_cache.outdir import OutputBusyError

    run_dir = tmp_path / "run"
    dead = tmp_path / ".run.tmp-999999-0badc0de"
    dead.mkdir()
    (dead / "checkpoint.pt").write_bytes(b"half")
    busy = rf"busy: another train is writing {run_dir} \(pid {os.getpid()}\)"
    with runs.claim_run(run_dir) as staged:
        assert not dead.exists()  # its writer's lock was free: removed
        with pytest.raises(OutputBusyError, match=busy), runs.claim_run(run_dir):
            pass
        assert staged.staging.is_dir()
    assert _names(tmp_path) == [".run.lock"]
