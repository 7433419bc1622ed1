"""Slide locks across processes, their release on kill -9, and clean-up after crashed writers."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from balnmp_cache.cache import clean_stale_temporaries, is_complete, load_cache, slide_lock, slide_path, write_slide
from balnmp_cache.cache.verify import verify_cache

from .conftest import make_slide, provenance

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL and fork-free POSIX subprocesses")

REPO = Path(__file__).resolve().parents[2]
KEY = "0123456789ab"


@contextmanager
def child(code: str, *, ready: str = "READY", timeout_s: float = 30.0) -> Iterator[subprocess.Popen[str]]:
    """Run ``code`` in a fresh interpreter; yield once it prints ``ready``; SIGKILL it on exit."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        readable, _, _ = select.select([proc.stdout], [], [], timeout_s)
        line = proc.stdout.readline().strip() if readable else ""  # type: ignore[union-attr]
        if line != ready:
            proc.kill()
            pytest.fail(f"child did not get ready (got {line!r}): {proc.stderr.read()}")  # type: ignore[union-attr]
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def kill9(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def test_slide_lock_is_exclusive_within_a_process(tmp_path: Path) -> None:
    with slide_lock(tmp_path, "s1") as first:
        assert first is True
        with slide_lock(tmp_path, "s1") as second, slide_lock(tmp_path, "s2") as other:
            assert second is False
            assert other is True
    with slide_lock(tmp_path, "s1") as again:
        assert again is True


def test_slide_lock_is_exclusive_across_processes_and_freed_by_kill_9(tmp_path: Path) -> None:
    code = f"""
        import time
        from balnmp_cache.cache import slide_lock
        with slide_lock({str(tmp_path)!r}, "s1") as got:
            print("READY" if got else "NOT-LOCKED", flush=True)
            time.sleep(120)
    """
    with child(code) as proc:
        with slide_lock(tmp_path, "s1") as got:
            assert got is False
        with slide_lock(tmp_path, "s2") as got:
            assert got is True
        kill9(proc)
    with slide_lock(tmp_path, "s1") as got:
        assert got is True


# Writer crashes: the real write_slide in a child, stopped at a chosen point and killed with SIGKILL.
HANG_BEFORE_RENAME = """
    import os, time
    def hang(*args, **kwargs):
        print("READY", flush=True)
        time.sleep(120)
    os.replace = hang
"""
HANG_HALF_WRITTEN = """
    import os, time
    real_write = os.write
    def hang(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        print("READY", flush=True)
        time.sleep(120)
    os.write = hang
"""
HANG_IN_ZARR_WRITE = """
    import time, balnmp_cache.cache.files as files
    def hang(path):
        print("READY", flush=True)
        time.sleep(120)
    files.fsync_dir = hang
"""


@pytest.mark.parametrize(
    ("format", "hang", "temp_has_flag"),
    [
        ("hdf5", HANG_BEFORE_RENAME, True),
        ("hdf5", HANG_HALF_WRITTEN, False),
        ("zarr", HANG_IN_ZARR_WRITE, True),
    ],
    ids=["hdf5-before-rename", "hdf5-half-written", "zarr-before-rename"],
)
def test_crashed_writer_leaves_only_a_temporary_that_is_cleaned(
    tmp_path: Path, format: str, hang: str, temp_has_flag: bool
) -> None:
    write_slide(tmp_path, make_slide("s0", **provenance(KEY)), format=format)  # a finished neighbour
    code = textwrap.dedent(hang) + textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / "tests" / "cache")!r})
        from conftest import make_slide, provenance
        from balnmp_cache.cache import write_slide
        write_slide({str(tmp_path)!r}, make_slide("s1", **provenance({KEY!r})), format={format!r})
    """)
    with child(code) as proc:
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
        assert len(temps) == 1 and f"-{proc.pid}-" in temps[0].name
        assert is_complete(temps[0]) is temp_has_flag
        assert not slide_path(tmp_path, "s1", format).exists()
        assert not is_complete(slide_path(tmp_path, "s1", format), cache_key=KEY)
        # A live writer's temporary is reported but never removed.
        assert clean_stale_temporaries(tmp_path) == []
        assert temps[0].exists()
        assert any("running process" in p.message for p in verify_cache(tmp_path) if p.path == temps[0])
        kill9(proc)

    assert load_cache(tmp_path).slide_ids == ["s0"]  # the temporary is never loaded
    assert any("stopped writer" in p.message for p in verify_cache(tmp_path) if p.path == temps[0])
    assert clean_stale_temporaries(tmp_path) == temps
    assert not temps[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".locks")) == [f"s0{temps[0].suffix}"]
    assert list((tmp_path / ".locks").glob("write-*")) == []
    # The re-run writes the slide as if nothing had happened.
    assert is_complete(write_slide(tmp_path, make_slide("s1", **provenance(KEY)), format=format), cache_key=KEY)
