"""cuCIM's native start-up noise ("dlopen error libcuda.so.1", "cuFile initialization failed") stays out of
the output on a machine without a GPU, also when stdout is a pipe (C stdio buffers it until exit) and when
the first slide is opened on a reader thread (cuCIM's slide plugin prints it once more on loading)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import shared_file

SCRIPT = """
import threading
from balnmp_cache.slides import open_slide

def read():
    with open_slide({path!r}) as reader:
        assert reader.backend == "cucim", reader.backend
        reader.read_regions([(0, 0), (256, 256)], 0, (128, 128))

thread = threading.Thread(target=read)
thread.start()
thread.join()
print("read")
"""


def test_opening_a_slide_with_cucim_prints_nothing_of_its_own():
    pytest.importorskip("cucim")
    path = shared_file("wsi/aperio_svs/CMU-1-Small-Region.svs")
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(path=str(path))], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "read\n" and "cuFile" not in done.stderr and "dlopen" not in done.stderr
