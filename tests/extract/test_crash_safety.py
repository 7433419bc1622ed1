"""kill -9 in the middle of an extraction, and two extract processes on one cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from balnmp_cache.cache import read_manifest
from tests.extract.conftest import write_precut_cohort

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "balnmp_cache.cli", "extract", *args, "--batch-size", "8"]


def _snapshot(cache_dir: Path) -> dict[str, dict]:
    """Every dataset's bytes and every attribute except the creation time, per slide file."""
    out = {}
    for path in sorted(cache_dir.glob("*.h5")):
        with h5py.File(path, "r") as f:
            data = {}
            for name in f:
                values = f[name][()]
                # variable-length strings come back as objects: compare their contents, not pointers
                data[name] = values.tolist() if values.dtype == object else values.tobytes()
            # repr() so that NaN attributes (an unknown MPP) compare equal to themselves
            attrs = {
                k: repr(v.tolist() if isinstance(v, np.ndarray) else v)
                for k, v in f.attrs.items()
                if k != "created_utc"
            }
        out[path.name] = {"data": data, "attrs": attrs}
    return out


def _cache_dir(root: Path) -> Path:
    (directory,) = [d for d in root.iterdir() if d.is_dir()]
    return directory


def _leftovers(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir() if p.name.startswith((".tmp-", ".old-")))


def test_kill_9_then_rerun_equals_an_uninterrupted_run(demo_root, tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(_cli(str(demo_root), "--out", str(reference)), check=True, capture_output=True)
    ref_dir = _cache_dir(reference)

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(
        _cli(str(demo_root), "--out", str(crashed)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    killed_mid_run = False
    while time.monotonic() < deadline and proc.poll() is None:
        files = list(crashed.glob("*/*.h5")) + list(crashed.glob("*/.tmp-*"))
        if files:
            os.kill(proc.pid, signal.SIGKILL)
            killed_mid_run = True
            break
        time.sleep(0.01)
    proc.wait()
    assert killed_mid_run, "the extraction finished before it could be killed"
    crash_dir = _cache_dir(crashed)
    assert len(list(crash_dir.glob("*.h5"))) < 4  # it really was interrupted

    subprocess.run(_cli(str(demo_root), "--out", str(crashed)), check=True, capture_output=True)
    assert crash_dir.name == ref_dir.name
    snapshot = _snapshot(ref_dir)
    assert len(snapshot) == 4 and all(entry["data"]["features"] for entry in snapshot.values())
    assert _snapshot(crash_dir) == snapshot
    assert _leftovers(crash_dir) == []
    statuses = {r.slide_id: r.status for r in read_manifest(crash_dir)}
    assert statuses == {r.slide_id: r.status for r in read_manifest(ref_dir)}


def test_two_processes_never_write_the_same_slide(demo_root, tmp_path):
    out = tmp_path / "cache"
    procs = [
        subprocess.Popen(_cli(str(demo_root), "--out", str(out), "-v"), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    cache_dir = _cache_dir(out)
    log = (out / "extract.log").read_text()
    for sid in ("1", "2", "3", "4"):
        tag = f"INFO balnmp_cache.extract.pipeline: {sid}: "
        writes = [line for line in log.splitlines() if tag in line and "patches in" in line]
        assert len(writes) == 1, (sid, writes)
    assert sorted(p.name for p in cache_dir.glob("*.h5")) == ["1.h5", "2.h5", "3.h5", "4.h5"]
    assert {r.status for r in read_manifest(cache_dir)} == {"ok"} and len(read_manifest(cache_dir)) == 4
    assert _leftovers(cache_dir) == []


COHORT = [2, 1, 3, 2, 1, 2, 3, 1, 2, 2, 1, 3, 2, 1, 2, 2, 3, 1]  # 34 patches in 18 patients: batches span slides


def _small_cli(source: Path, out: Path, *extra: str) -> list[str]:
    return [*_cli(str(source), "--out", str(out), "--patch-px", "64"), *extra]


def test_kill_9_in_a_cohort_of_small_slides_then_rerun_equals_an_uninterrupted_run(tmp_path):
    patches = write_precut_cohort(tmp_path / "bcnb", COHORT)
    reference = tmp_path / "reference"
    subprocess.run(_small_cli(patches, reference), check=True, capture_output=True)
    ref_dir = _cache_dir(reference)

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(_small_cli(patches, crashed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(crashed.glob("*/*.h5"))) >= 3:  # some slides written, some in a shared batch, some unread
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait() == -signal.SIGKILL, "the extraction finished before it could be killed"
    crash_dir = _cache_dir(crashed)
    assert 3 <= len(list(crash_dir.glob("*.h5"))) < len(COHORT)

    again = subprocess.run(_small_cli(patches, crashed), check=True, capture_output=True, text=True)
    assert "already complete" in again.stdout
    snapshot = _snapshot(ref_dir)
    assert len(snapshot) == len(COHORT)
    assert _snapshot(crash_dir) == snapshot  # a shorter to-do list, other batches: the same bytes
    assert _leftovers(crash_dir) == []
    rows = {r.slide_id: (r.status, r.n_patches) for r in read_manifest(crash_dir)}
    assert rows == {r.slide_id: (r.status, r.n_patches) for r in read_manifest(ref_dir)}
    assert not (crash_dir / ".journal.jsonl").exists()


def _writes(log: str, sid: str) -> list[str]:
    tag = f"INFO balnmp_cache.extract.pipeline: {sid}: "
    return [line for line in log.splitlines() if tag in line and "patches in" in line]


@pytest.mark.parametrize("shards", [False, True], ids=["same-list", "two-shards"])
def test_two_processes_on_a_cohort_of_small_slides_write_each_slide_once(tmp_path, shards):
    patches = write_precut_cohort(tmp_path / "bcnb", COHORT)
    out = tmp_path / "cache"
    extra = [["--shard", "0/2"], ["--shard", "1/2"]] if shards else [[], []]
    procs = [
        subprocess.Popen(
            _small_cli(patches, out, "-v", *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for args in extra
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    cache_dir = _cache_dir(out)
    log = (out / "extract.log").read_text()
    ids = [f"p{i:03d}" for i in range(len(COHORT))]
    assert all(len(_writes(log, sid)) == 1 for sid in ids), [(sid, _writes(log, sid)) for sid in ids]
    assert sorted(p.stem for p in cache_dir.glob("*.h5")) == ids
    rows = read_manifest(cache_dir)
    assert [r.slide_id for r in rows] == ids and {r.status for r in rows} == {"ok"}
    assert [r.n_patches for r in rows] == COHORT
    if shards:  # each process did its own shard and left the other's alone
        assert all("left to another extract process" not in o for o in outputs)
        counts = [int(line.split(": ")[-1].split(" of ")[0]) for line in log.splitlines() if " shard " in line]
        assert len(counts) == 2 and sum(counts) == len(COHORT) and min(counts) >= len(COHORT) // 3
    assert _leftovers(cache_dir) == [] and not (cache_dir / ".journal.jsonl").exists()
