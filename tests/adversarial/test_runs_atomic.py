"""Issue 8, item 2: a run directory holds one complete run or none, and has one writer at a time.

Each test uses real processes: a ``train`` child killed with SIGKILL in the middle of its epochs, a
child killed inside the swap (where RENAME_EXCHANGE is there, and where it is not), a second writer
while the first runs. What was complete before is compared file by file (sha256).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from balnmp_cache import runs

from .conftest import ENV, REPO, digests, run_cli
from .runs_support import copy_run, finished_runs, leftovers, one_error, start_cli, tiny_study, train_args, wait_for

__all__ = ["finished_runs", "tiny_study"]  # fixtures used here


def test_a_finished_run_is_not_replaced_without_force(tiny_study, finished_runs, tmp_path: Path) -> None:
    run = copy_run(finished_runs(0), tmp_path / "run")
    before = digests(run)
    result = run_cli(*train_args(tiny_study, run, "--seed", "1"))
    one_error(result, f"{run} already holds a finished run (task 0: N0 vs N(+), head balnmp", "pass --force")
    assert digests(run) == before and leftovers(tmp_path) == []


def test_kill_9_during_a_forced_retrain_keeps_the_old_run_and_a_second_writer_is_busy(
    tiny_study, finished_runs, tmp_path: Path
) -> None:
    reference = finished_runs(0)
    run = copy_run(finished_runs(1), tmp_path / "run")
    before = digests(run)
    log_file = tmp_path / "run.log"
    child = start_cli(*train_args(tiny_study, run, "--force", "--epochs", "2000", "--patience", "2000"))
    try:
        wait_for(lambda: log_file.is_file() and "epoch 2:" in log_file.read_text(), what="epoch 2 of the child")
        busy = run_cli(*train_args(tiny_study, run, "--force"))
        one_error(busy, f"busy: another train is writing {run} (pid {child.pid})", "another --out")
    finally:
        child.kill()  # SIGKILL
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    assert digests(run) == before  # the old complete run, byte for byte: no old checkpoint beside new files
    assert len(leftovers(tmp_path)) == 1  # the killed writer's staging folder
    assert "busy" not in log_file.read_text()  # the refused writer logged nothing into the run's log

    predicted = run_cli("predict", run, tiny_study.cache_dir, "--out", tmp_path / "predict")
    assert predicted.exit_code == 0, predicted.stderr  # the old run is complete and usable

    again = run_cli(*train_args(tiny_study, run, "--force"))  # the cause gone: a re-run
    assert again.exit_code == 0, again.stderr
    assert leftovers(tmp_path) == []  # its lock was free: the dead writer's folder is removed
    same = ("predictions.csv", "attention.csv", "checkpoint.pt")  # as an uninterrupted run with these flags
    assert {k: v for k, v in digests(run).items() if k in same} == {k: digests(reference)[k] for k in same}


CHILD = """
import os, shutil, signal, sys
from pathlib import Path
from balnmp_cache import outdir, runs

target, new, window = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
rename, exchange = os.rename, outdir._exchange

def die_after(step):
    def wrapper(*args):
        done = step(*args)
        os.kill(os.getpid(), signal.SIGKILL)
        return done
    return wrapper

if window == "between-renames":  # a filesystem without RENAME_EXCHANGE: killed after the first rename
    outdir._exchange = lambda a, b: False
    os.rename = die_after(rename)
else:  # killed right after the atomic exchange, before the replaced run is removed
    outdir._exchange = die_after(exchange)
with runs.claim_run(target, force=True) as staged:
    shutil.copytree(new, staged.staging, dirs_exist_ok=True)
    staged.commit()
"""


def _kill_in_swap(target: Path, new: Path, window: str) -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, str(target), str(new), window], capture_output=True,
                          text=True, env={**os.environ, **ENV}, cwd=REPO, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_kill_9_right_after_the_exchange_leaves_the_new_run_and_the_next_writer_cleans_up(
    tiny_study, finished_runs, tmp_path: Path
) -> None:
    run = copy_run(finished_runs(0), tmp_path / "run")
    new = finished_runs(1)
    _kill_in_swap(run, new, "exchange")
    assert digests(run) == digests(new) and runs.is_finished(run)
    assert len(leftovers(tmp_path)) == 1  # the replaced run, at the staging name
    refused = run_cli(*train_args(tiny_study, run))  # the next writer: refused (finished), but it cleans up
    one_error(refused, "already holds a finished run", "--force")
    assert leftovers(tmp_path) == [] and digests(run) == digests(new)


def test_kill_9_between_the_two_renames_is_finished_by_the_next_reader(
    tiny_study, finished_runs, tmp_path: Path
) -> None:
    run = copy_run(finished_runs(0), tmp_path / "run")
    new = finished_runs(1)
    _kill_in_swap(run, new, "between-renames")
    assert not run.exists() and len(leftovers(tmp_path)) == 2  # the old run moved aside, the new one complete
    predicted = run_cli("predict", run, tiny_study.cache_dir, "--out", tmp_path / "predict")
    assert predicted.exit_code == 0, predicted.stderr
    assert digests(run) == digests(new) and leftovers(tmp_path) == []
    assert (tmp_path / "predict" / "predictions.csv").read_text() == _predict_text(tiny_study, new, tmp_path)


def _predict_text(study, run: Path, tmp_path: Path) -> str:
    result = run_cli("predict", run, study.cache_dir, "--out", tmp_path / "predict-reference")
    assert result.exit_code == 0, result.stderr
    return (tmp_path / "predict-reference" / "predictions.csv").read_text()


def test_predict_and_report_refuse_a_run_without_a_complete_run_json(finished_runs, tiny_study, tmp_path) -> None:
    run = copy_run(finished_runs(0), tmp_path / "run")
    (run / "run.json").unlink()  # what an older version left after kill -9: a checkpoint, no run.json
    before = digests(run)
    predicted = run_cli("predict", run, tiny_study.cache_dir, "--out", tmp_path / "predict")
    one_error(predicted, f"{run} is not a finished train run (run.json is missing or unreadable; its "
              "checkpoint.pt may be stale or partial)")
    reported = run_cli("report", run, "--out", tmp_path / "report")
    one_error(reported, f"run {run} is unfinished")
    assert digests(run) == before and not (tmp_path / "report").exists()
    assert not (tmp_path / "predict" / "predictions.csv").exists()  # (only predict's log file was opened)
    retrained = run_cli(*train_args(tiny_study, run))  # an unfinished run is replaced without --force
    assert retrained.exit_code == 0 and runs.is_finished(run)


def test_train_never_deletes_a_folder_it_did_not_write(tiny_study, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.docx").write_bytes(b"years of work")
    result = run_cli(*train_args(tiny_study, out, "--force"))
    one_error(result, f"--out {out} is not a run directory: it holds thesis.docx", "choose another --out")
    assert digests(out) == {"thesis.docx": digests(out)["thesis.docx"]} and leftovers(tmp_path) == []
