"""A real two-node Ray cluster on this machine for the engine tests, and a cache comparison.

``ray start --head`` and ``ray start --address`` each start one node of 1 CPU with a small object
store in a private temporary folder; processes are found by that folder in their command line (and
as children of those), so the teardown stops exactly this cluster's processes and nothing else.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
OBJECT_STORE = str(100 * 1024**2)
# A node's death is noticed within about a second; tokens of another cluster on this machine are not used.
FAST_FAILURE = {"RAY_health_check_period_ms": "300", "RAY_health_check_failure_threshold": "3",
                "RAY_health_check_initial_delay_ms": "500", "RAY_health_check_timeout_ms": "300"}


def ray_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, **FAST_FAILURE, "PYTHONPATH": path, "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            table[int(entry.name)] = (ppid, cmd)
    return table


class LocalCluster:
    """Two Ray nodes on this machine (1 CPU each); :meth:`kill_worker_raylet` is ``kill -9`` of the second."""

    def __init__(self) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: it names Unix sockets
        self.address = f"127.0.0.1:{_free_port()}"
        self.worker_raylet: int | None = None

    def _start(self, *args: str) -> None:
        subprocess.run([RAY, "start", "--num-cpus", "1", "--object-store-memory", OBJECT_STORE,
                        "--disable-usage-stats", *args], env=ray_env(), check=True, timeout=180,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> LocalCluster:
        port = self.address.rsplit(":", 1)[1]
        self._start("--head", "--port", port, "--temp-dir", str(self.temp), "--include-dashboard=false")
        return self.join()

    def join(self) -> LocalCluster:
        """Start the second node (again, after :meth:`kill_worker_raylet`)."""
        before = set(self._raylets())
        self._start("--address", self.address)
        (self.worker_raylet,) = set(self._raylets()) - before
        return self

    def _ours(self) -> list[int]:
        table = _processes()
        ours = {pid for pid, (_, cmd) in table.items() if str(self.temp) in cmd}
        grown = True
        while grown:  # and their children (workers retitle themselves ray::...)
            more = {pid for pid, (ppid, _) in table.items() if ppid in ours} - ours
            ours |= more
            grown = bool(more)
        return sorted(ours)

    def _raylets(self) -> list[int]:
        table = _processes()
        return [pid for pid in self._ours() if "/raylet/raylet " in table.get(pid, (0, ""))[1]]

    def worker_node_runs(self, title: str) -> bool:
        """Whether a worker process of the second node is executing ``title`` (Ray retitles it ``ray::title``)."""
        return any(ppid == self.worker_raylet and cmd.startswith(f"ray::{title} ")
                   for ppid, cmd in _processes().values())

    def kill_worker_raylet(self) -> None:
        assert self.worker_raylet is not None
        os.kill(self.worker_raylet, signal.SIGKILL)

    def stop(self) -> list[int]:
        """SIGTERM to every process of the cluster, SIGKILL to what is left after 5 s; returns survivors."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for pid in self._ours():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while self._ours() and time.monotonic() < deadline:
                time.sleep(0.2)
        left = self._ours()
        shutil.rmtree(self.temp, ignore_errors=True)
        return left


@contextlib.contextmanager
def local_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster()
    try:
        yield cluster.start()
    finally:
        assert cluster.stop() == [], "processes of the test's Ray cluster outlived its teardown"


# --- comparing caches --------------------------------------------------------------------------------------

TIME_ATTRS = {"created_utc"}
"""Attributes of a slide file that record when it was written: the only bytes two runs may differ in."""


def _h5_items(path: Path) -> dict[str, object]:
    items: dict[str, object] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                raw = data.tolist() if data.dtype.kind == "O" else data.tobytes()  # strings, or the exact bits
                items[name] = (obj.dtype.str, obj.shape, raw)
            for key, value in obj.attrs.items():  # type: ignore[attr-defined]
                if key not in TIME_ATTRS:
                    items[f"{name}@{key}"] = np.asarray(value).tobytes()
        visit("/", f)
        f.visititems(visit)
    return items


def _manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        rows = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]
    return sorted(rows, key=lambda r: r["slide_id"])


def cache_differences(a: Path, b: Path) -> list[str]:
    """The files that differ between two cache directories, apart from :data:`TIME_ATTRS` and seconds."""
    problems: list[str] = []
    names_a = sorted(p.name for p in a.iterdir() if not p.name.startswith("."))
    names_b = sorted(p.name for p in b.iterdir() if not p.name.startswith("."))
    if names_a != names_b:
        return [f"files differ: {names_a} vs {names_b}"]
    same = {".h5": lambda x, y: _h5_items(x) == _h5_items(y),
            "manifest.csv": lambda x, y: _manifest(x) == _manifest(y),
            "cache.json": lambda x, y: x.read_bytes() == y.read_bytes()}
    for name in names_a:
        check = same.get(Path(name).suffix if name.endswith(".h5") else name)
        if check is not None and not check(a / name, b / name):
            problems.append(name)
    return problems
