"""Adding a head is one file: this one registers ``toy`` (with a loss of its own) and trains it through the CLI."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typer.testing import CliRunner

from balnmp_cache.cli import app
from balnmp_cache.mil import MILHead, head_spec, list_heads, register_head
from balnmp_cache.mil.base import masked_mean, uniform_attention
from balnmp_cache.runs import read_curves, read_predictions


@register_head("toy")
class ToyHead(MILHead):
    """Mean of a per-patch embedding, trained with a label-smoothed cross-entropy."""

    loss_calls = 0

    def __init__(self, *, in_dim: int, n_classes: int, clinical_dim: int = 0, expand_times: int = 10,
                 smoothing: float = 0.1) -> None:
        super().__init__(in_dim=in_dim, n_classes=n_classes, clinical_dim=clinical_dim, expand_times=expand_times)
        self.smoothing = float(smoothing)
        self.embed = nn.Sequential(nn.Linear(in_dim, 16), nn.ReLU())
        self.classifier = nn.Linear(16 + self.fused_clinical_dim, n_classes)

    def pool(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return masked_mean(self.embed(features), mask), uniform_attention(mask)  # (B, 16), (B, N)

    def loss(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        type(self).loss_calls += 1
        return F.cross_entropy(logits.float(), target, weight=weight, label_smoothing=self.smoothing)


def test_a_head_added_in_one_file_trains_through_the_cli(study, tmp_path):
    assert "toy" in list_heads() and head_spec("toy").uses_features and not head_spec("toy").closed_form
    config = tmp_path / "train.toml"
    config.write_text('epochs = 6\npatience = 6\nlr = 1e-2\nbatch_bags = 16\nthreads = 1\n'
                      '[head_options]\nsmoothing = 0.2\n', encoding="utf-8")
    out = tmp_path / "toy"
    before = ToyHead.loss_calls
    result = CliRunner().invoke(app, ["train", "--config", str(config), "--cache", str(study.cache_dir),
                                      "--cohort", str(study.cohort_csv), "--head", "toy", "--no-clinical",
                                      "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert ToyHead.loss_calls > before  # every optimizer step went through the head's own loss
    info = json.loads((out / "run.json").read_text())
    assert info["head"] == "toy" and info["head_options"] == {"smoothing": 0.2} and info["clinical"] is False
    assert info["metrics"]["val"]["auc"] > 0.85  # it learned the planted signal
    assert len(read_predictions(out)) == len(study.patient_ids) and len(read_curves(out)) == 6
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["head"] == "toy" and checkpoint["head_options"] == {"smoothing": 0.2}


def test_an_unknown_head_on_the_cli_lists_the_registered_ones(study, tmp_path):
    result = CliRunner().invoke(app, ["train", "--cache", str(study.cache_dir), "--cohort", str(study.cohort_csv),
                                      "--head", "toys", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown MIL head 'toys'" in result.output and "toy" in result.output
    assert "Traceback" not in result.output
