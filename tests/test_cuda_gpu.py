"""tests/test_cuda.py again on a real NVIDIA GPU, in a child process without
the simulator. Skipped where numba.cuda finds no GPU: the only test allowed
to skip itself for want of hardware."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
ENV["FASTBP_TEST_REAL_GPU"] = "1"


def _gpu_present():
    probe = subprocess.run([sys.executable, "-c", "from numba import cuda; print(cuda.is_available())"],
                           capture_output=True, text=True, env=ENV)
    return probe.stdout.strip() == "True"


@pytest.mark.skipif(not _gpu_present(), reason="no NVIDIA GPU visible to numba.cuda")
def test_cuda_suite_on_a_real_gpu():
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"],
                          cwd=REPO, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
