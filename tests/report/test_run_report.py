"""End to end: run_report on synthetic run directories writes every file with the documented contents."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from rich.console import Console

from balnmp_cache._cli_tables import report_table
from balnmp_cache.config import load_config
from balnmp_cache.errors import ConfigError, ReportInputError
from balnmp_cache.report import ReportConfig, run_report
from balnmp_cache.report.binary import REQUIRED_METRIC_KEYS
from balnmp_cache.report.run import REPORT_METRIC_KEYS

from .conftest import run_json, synthetic_cohort, synthetic_labels, write_predictions

PROPORTIONS = ("auc", "acc", "sens", "spec", "ppv", "npv")
COMPARISON_REQUIRED = {"run_a", "run_b", "split", "auc_a", "auc_b", "z", "p_value"}


class _Html(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.images, self.external, self.tables, self.warnings = [], [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in ("meta", "img", "br"):
            self.stack.append(tag)
        if tag == "img":
            self.images.append(attrs["src"])
        external = tag == "link" or (tag == "script" and "src" in attrs)
        if external or (tag == "a" and attrs.get("href", "").startswith("http")):
            self.external.append(tag)
        self.tables += tag == "table"
        self.warnings += attrs.get("class") == "warning"

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"


@pytest.fixture
def demo_like_runs(tmp_path, make_binary_run):
    """Three binary runs of task 0 on the same patients (one with a random encoder), a three-class run, a cohort CSV."""
    paths = [
        make_binary_run("image", strength=1.4, seed=1, random_weights=True),
        make_binary_run("image_clinical", strength=1.8, seed=2),
        make_binary_run("clinical_only", strength=0.5, seed=3),
    ]
    frame = synthetic_labels(0)
    rng = np.random.default_rng(9)
    labels3 = rng.integers(0, 3, len(frame))
    frame3 = frame.assign(label=labels3)
    logits = rng.normal(size=(len(frame), 3))
    logits[np.arange(len(frame)), labels3] += 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    paths.append(write_predictions(tmp_path / "runs" / "three_class", frame3, probabilities,
                                   run_json=run_json(2, classes=("N0", "N+(1-2)", "N+(>2)"))))  # fmt: skip
    cohort = synthetic_cohort(frame["patient_id"].tolist(), frame["split"].tolist())
    cohort_csv = tmp_path / "cohort.csv"
    cohort.to_csv(cohort_csv)
    return paths, cohort_csv


def test_run_report_writes_every_output(tmp_path, demo_like_runs):
    paths, cohort_csv = demo_like_runs
    events = []
    config = ReportConfig(out=tmp_path / "report", clinical=cohort_csv)
    result = run_report(config.model_copy(update={"paths": paths}), progress=events.append)
    out = tmp_path / "report"

    expected = ["metrics.json", "comparisons.json", "metrics.csv", "comparisons.csv", "subgroups.csv", "subgroups.json",
                "table1.csv", "multiclass.csv", "multiclass.json", "report.md", "report.html", "config.toml",
                "roc_task0_train.png", "roc_task0_val.svg", "roc_task0_test.png", "roc_task0_test.svg",
                "confusion_image.png", "confusion_three_class.svg"]  # fmt: skip
    for name in expected:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert result.files[name] == out / name

    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics) == 3 * 3 * 2  # binary runs × splits × threshold rules
    for record in metrics:
        assert tuple(record) == REPORT_METRIC_KEYS and set(REQUIRED_METRIC_KEYS) <= set(record)
        assert record["threshold_rule"] in ("0.5", "youden")
        assert record["n"] == record["tp"] + record["fp"] + record["tn"] + record["fn"]
        for name in PROPORTIONS:
            value, ci = record[name], record[f"{name}_ci"]
            assert value is not None and 0.0 <= value <= 1.0
            assert len(ci) == 2 and 0.0 <= ci[0] <= value <= ci[1] <= 1.0
    assert "NaN" not in (out / "metrics.json").read_text()

    comparisons = json.loads((out / "comparisons.json").read_text())
    assert len(comparisons) == 3 * 3  # pairs × splits; the three-class run is another task
    assert all(set(c) >= COMPARISON_REQUIRED and 0.0 <= c["p_value"] <= 1.0 for c in comparisons)
    assert {(c["run_a"], c["run_b"]) for c in comparisons} == {
        ("image", "image_clinical"), ("image", "clinical_only"), ("image_clinical", "clinical_only")}

    subgroups = json.loads((out / "subgroups.json").read_text())
    assert {s["variable"] for s in subgroups} == {"age", "t_stage", "er", "pr", "her2"}
    multiclass = json.loads((out / "multiclass.json").read_text())
    assert [m["split"] for m in multiclass] == ["train", "val", "test"] and multiclass[0]["classes"][2] == "N+(>2)"
    assert "Tumour Type" in (out / "table1.csv").read_text()

    # the random encoder is flagged everywhere
    assert any("randomly initialised encoder" in w for w in result.warnings)
    assert result.random_weight_runs == ["image"]
    markdown = (out / "report.md").read_text()
    assert "> **Warning:** run image uses features from a randomly initialised encoder" in markdown
    assert "Youden-optimal threshold chosen on V (val)" in markdown and "threshold 0.5 (the official code" in markdown
    assert "I-T (test)" in markdown and "](roc_task0_test.png)" in markdown

    parser = _Html()
    parser.feed((out / "report.html").read_text())
    assert parser.stack == ["html"] or parser.stack == []
    assert parser.external == [] and parser.warnings == 1 and parser.tables >= 6
    assert len(parser.images) == 3 + 3 + 1 + 1 + 4  # ROC and PR per split, calibration, one-vs-rest ROC, confusions
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"

    console = Console(record=True, width=220)
    console.print(report_table(result))
    text = console.export_text()
    test_auc = next(r for r in metrics if r["run"] == "image_clinical" and r["split"] == "test")
    assert f"{test_auc['auc']:.3f} ({test_auc['auc_ci'][0]:.3f}–{test_auc['auc_ci'][1]:.3f})" in text
    assert "random encoder" in text and "(macro)" in text

    resolved = load_config(ReportConfig, out / "config.toml")
    assert resolved.paths == paths and resolved.clinical == cohort_csv
    assert events[0].kind == "start" and events[-1].kind == "end"


def test_runs_of_one_task_on_different_patients_are_an_error(tmp_path, make_binary_run):
    a = make_binary_run("a", labels_seed=0)
    frame = synthetic_labels(0)
    frame.loc[frame.index[-1], "patient_id"] = "999"
    p1 = np.full(len(frame), 0.4)
    b = write_predictions(tmp_path / "runs" / "b", frame, np.column_stack([1 - p1, p1]), run_json=run_json(0))
    with pytest.raises(ReportInputError) as info:
        run_report(ReportConfig(paths=[a, b], out=tmp_path / "out", figure_formats=["png"]))
    message = str(info.value)
    assert str(a / "predictions.csv") in message and str(b / "predictions.csv") in message and "999" in message


def test_report_without_cohort_or_val_split(tmp_path):
    frame = synthetic_labels(0, {"train": 20, "test": 12})
    p1 = np.linspace(0.02, 0.98, len(frame))
    run = write_predictions(tmp_path / "bare", frame, np.column_stack([1 - p1, p1]))
    result = run_report(ReportConfig(paths=[run / "predictions.csv"], out=tmp_path / "out", figure_formats=["svg"]))
    out = tmp_path / "out"
    assert not (out / "subgroups.csv").exists() and not (out / "table1.csv").exists()
    assert (out / "roc_2class_test.svg").is_file() and not (out / "roc_2class_test.png").exists()
    assert json.loads((out / "comparisons.json").read_text()) == []
    youden = [r for r in result.metrics if r["threshold_rule"] == "youden"]
    assert all(r["threshold"] == 0.5 and r["threshold_note"].startswith("fallback to 0.5") for r in youden)
    assert any("Youden fallback to 0.5" in w for w in result.warnings)
    markdown = (out / "report.md").read_text()
    assert "No cohort was given" in markdown and "fallback to 0.5" in markdown


def test_no_runs_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no runs to report"):
        run_report(ReportConfig(paths=[], out=tmp_path / "out"))
