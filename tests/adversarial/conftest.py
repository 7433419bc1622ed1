"""Reusable fixtures for adversarial tests: tiny slides and an extracted cache, a small tmpfs, a read-only folder.

Everything is small so the whole folder runs in well under a minute on two cores: two 512 x 256
JPEG slides of 4 patches each (patch_px 128), EfficientNet-Lite0, batch 8. The cache is
extracted once per session and copied per test (:func:`copy_cache`).

Helpers:
    run_cli(*args): ``balnmp_cache.cli`` in this process (typer's CliRunner), stdout and stderr apart.
    run_cli_subprocess(*args): the same in a child ``python -m balnmp_cache.cli`` (for crashes and exit codes
        that only a real process shows: a segfault is a negative return code there).
    digests(folder): sha256 of every file under a folder (to show what was complete is byte-identical).
    snapshot(cache_dir): every dataset's values and every attribute but ``created_utc``, per slide file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
COLUMNS = "4000"  # rich wraps at the console width: this wide, one message is one line
ENV = {"COLUMNS": COLUMNS, "PYTHONPATH": str(REPO)}
EXTRACT_ARGS = ("--patch-px", "128", "--batch-size", "8", "--num-workers", "1")


@dataclass(frozen=True)
class CliResult:
    """What one CLI call did: its exit code and its two output streams."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """The ``error: ...`` lines the CLI printed."""
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def run_cli(*args: str | Path) -> CliResult:
    """``balnmp-cache ARGS`` in this process; rich renders :data:`COLUMNS` wide."""
    from typer.testing import CliRunner

    from balnmp_cache.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": COLUMNS})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash of the command itself, not an exit code
    return CliResult(result.exit_code, result.stdout, result.stderr)


def run_cli_subprocess(*args: str | Path, timeout: float = 120) -> CliResult:
    """``python -m balnmp_cache.cli ARGS`` in a child process (a segfault shows as a negative exit code)."""
    command = [sys.executable, "-m", "balnmp_cache.cli", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **ENV}, timeout=timeout, cwd=REPO)
    return CliResult(done.returncode, done.stdout, done.stderr)


def digests(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (lock files left out: they are empty and stay)."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and ".locks" not in path.parts:
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def snapshot(cache_dir: Path) -> dict[str, dict]:
    """Per slide file: every array's values and every attribute except ``created_utc``."""
    from balnmp_cache.cache import read_slide

    out = {}
    for path in sorted(p for p in Path(cache_dir).iterdir() if p.suffix in (".h5", ".zarr")):
        sf = read_slide(path)
        attrs = {k: repr(v) for k, v in sf.attrs.items() if k != "created_utc"}
        out[path.name] = {
            "features": sf.features.tobytes(), "coords": sf.coords.tobytes(), "region_id": sf.region_id.tobytes(),
            "patch_key": list(sf.patch_key), "attrs": attrs,
        }
    return out


def write_tiny_slide(path: Path, *, offset: int, seed: int) -> Path:
    """A 512 x 256 JPEG: white background and a 256 x 256 pink tissue square at ``offset`` px (4 patches of 128)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    image = np.full((256, 512, 3), 245, np.uint8)
    tissue = rng.normal(0, 20, size=(256, 256, 3)) + np.array([190, 110, 160])
    image[:, offset : offset + 256] = np.clip(tissue, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=90)
    return path


@pytest.fixture(scope="session")
def tiny_slides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two tiny slides, ``a.jpg`` and ``b.jpg`` (no annotation: tissue detection)."""
    folder = tmp_path_factory.mktemp("slides") / "colA"
    write_tiny_slide(folder / "a.jpg", offset=0, seed=1)
    write_tiny_slide(folder / "b.jpg", offset=128, seed=2)
    return folder


def extract_config(sources: list[Path], out: Path, **overrides: object):
    """The ExtractConfig that ``run_cli("extract", *sources, "--out", out, *EXTRACT_ARGS)`` resolves to."""
    from balnmp_cache.extract import ExtractConfig

    values = dict(sources=sources, out=out, patch_px=128, batch_size=8, num_workers=1)
    values.update(overrides)
    return ExtractConfig(**values)


@pytest.fixture(scope="session")
def extracted(tmp_path_factory: pytest.TempPathFactory, tiny_slides: Path) -> Callable[[str], Path]:
    """``extracted(format)``: the cache root of ``tiny_slides`` extracted once per session (do not modify it)."""
    from balnmp_cache.extract import run_extract

    roots: dict[str, Path] = {}

    def get(format: str = "hdf5") -> Path:
        if format not in roots:
            root = tmp_path_factory.mktemp(f"cache-{format}") / "out"
            result = run_extract(extract_config([tiny_slides], root, format=format))
            assert result.n_ok == 2 and result.exit_code == 0
            roots[format] = root
        return roots[format]

    return get


@pytest.fixture
def copy_cache(extracted: Callable[[str], Path], tmp_path: Path) -> Callable[..., Path]:
    """``copy_cache(format, into=None)``: a private copy of the session cache; returns the cache folder."""

    def copy(format: str = "hdf5", into: Path | None = None) -> Path:
        root = into if into is not None else tmp_path / f"out-{format}"
        shutil.copytree(extracted(format), root, dirs_exist_ok=True)
        (cache_dir,) = [d for d in root.iterdir() if d.is_dir()]
        return cache_dir

    return copy


def _mount(args: list[str]) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``path`` for the block (root only; skips the test otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    if not _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]):
        pytest.skip("mount -t tmpfs failed (no privilege in this container)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path, *, leave_bytes: int) -> Path:
    """Write a filler file into ``folder`` until about ``leave_bytes`` are free on its filesystem."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    filler = folder / "filler"
    with filler.open("wb") as handle:
        handle.write(b"\0" * max(0, free - leave_bytes))
    return filler


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 600 kB tmpfs (root only; the test skips elsewhere), unmounted afterwards."""
    with tmpfs(tmp_path / "tmpfs", "600k") as path:
        yield path


@pytest.fixture
def read_only() -> Callable[[Path], None]:
    """``read_only(folder)``: make an existing folder read-only for the rest of the test.

    As root the folder must be a mount point (e.g. a :func:`tmpfs`): it is remounted read-only
    (EROFS), since root ignores permission bits. Elsewhere its mode becomes 0555 (EACCES).
    """
    changed: list[Path] = []

    def make(folder: Path) -> None:
        if os.geteuid() == 0:
            if not _mount(["-o", "remount,ro", str(folder)]):
                pytest.skip("remounting read-only failed")
        else:
            for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
                path.chmod(0o555)
        changed.append(folder)

    yield make
    for folder in changed:
        if os.geteuid() != 0:
            for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
                path.chmod(0o755)


@pytest.fixture
def read_only_dir(tmp_path: Path, read_only: Callable[[Path], None]) -> Iterator[Path]:
    """An empty read-only folder: a read-only tmpfs as root (EROFS), mode 0555 elsewhere (EACCES)."""
    folder = tmp_path / "read-only"
    if os.geteuid() == 0:
        with tmpfs(folder, "64k"):
            read_only(folder)
            yield folder
    else:
        folder.mkdir()
        read_only(folder)
        yield folder
