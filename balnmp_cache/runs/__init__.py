"""The run directory: one contract for everything a trained run leaves behind.

```
RUN_DIR/
    config.toml       the resolved TrainConfig
    run.json          a RunRecord with "complete": true; written last
    checkpoint.pt     a Checkpoint: head weights + everything predict needs (options, dims, classes, clinical encoder)
    curves.csv        epoch, lr, train_loss, train_auc, val_loss, val_auc, best, seconds
    attention.csv     patient_id, split, bag, patch_key, x, y, attention (every evaluation bag of every patient)
    predictions.csv   patient_id, split, label, n_bags, p_0 ... p_{C-1}  (the report's input)
```

Beside it: ``RUN_DIR.log`` (the CLI's log of ``train``), ``.RUN_DIR.lock`` (one writer at a time) and, while a
run is built, ``.RUN_DIR.tmp-<pid>-<token>/`` (see :mod:`balnmp_cache.outdir`).

Only this package names these files. :func:`claim_run` makes a process the one writer of a run
directory and gives it a staging folder; :func:`write_run` is the single place that writes a finished
run (into that folder, ``run.json`` last), which is then swapped in whole, so a run directory holds
one complete run or none, never a mix; :func:`is_finished` tells a finished run; ``predict`` writes
its two score files with :func:`write_scores`.
"""

from balnmp_cache.runs.claim import RUN_EXTRAS, RunExistsError, claim_run
from balnmp_cache.runs.files import (
    FREE_SPACE_RESERVE,
    Scores,
    cell,
    check_free_space,
    csv_text,
    has_checkpoint,
    is_finished,
    read_attention,
    read_checkpoint,
    read_curves,
    read_predictions,
    read_run,
    unfinished_reason,
    write_csv,
    write_run,
    write_scores,
)
from balnmp_cache.runs.records import CHECKPOINT_FORMAT, CURVE_COLUMNS, Checkpoint, RunFiles, RunRecord, run_files

__all__ = [
    "CHECKPOINT_FORMAT", "CURVE_COLUMNS", "FREE_SPACE_RESERVE", "RUN_EXTRAS", "Checkpoint", "RunExistsError",
    "RunFiles", "RunRecord", "Scores", "cell", "check_free_space", "claim_run", "csv_text", "has_checkpoint",
    "is_finished", "read_attention", "read_checkpoint", "read_curves", "read_predictions", "read_run", "run_files",
    "unfinished_reason", "write_csv", "write_run", "write_scores",
]
