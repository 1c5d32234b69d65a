"""Which OpenBLAS kernels a training step's products run on, and what
choosing others costs: one step's GEMMs (forward, weight and input
gradients) of a few networks, float32 and float64, each in a fresh process
(OpenBLAS reads OPENBLAS_CORETYPE once, when it loads) with OpenBLAS's own
choice of kernels and with each core type named on the command line.

    python benchmarks/blas_core.py [CORETYPE ...]    # default: Haswell SkylakeX

OpenBLAS picks its kernels from the CPU at load time; OPENBLAS_CORETYPE
overrides that (an older kernel on a newer CPU, or a workaround for an
OpenBLAS that misreads the CPU). The header of `python -m fastbp bench`
names the kernels fastbp's OpenBLAS runs and says when the variable is set.
A core type the CPU cannot run (SkylakeX without AVX-512) is OpenBLAS's
to refuse; it then falls back to its own choice, which the output shows.
"""
import json
import os
import subprocess
import sys

import numpy as np

CASES = (((64, 128, 128, 10), 32, "float32"), ((64, 128, 128, 10), 256, "float32"),
         ((64, 512, 512, 10), 256, "float32"), ((784, 256, 256, 10), 256, "float64"),
         ((64, 128, 10), 32, "float64"))

_CHILD = """
import json, sys
import numpy as np
from fastbp.cli.bench import forward_macs, step_gemms
from fastbp.cli.timing import best_us
from fastbp.threads import _blas_controller
arch = sorted({d.get("architecture") for d in _blas_controller().info()
               if d["user_api"] == "blas" and "scipy.libs" in d["filepath"]})
rows = []
for widths, batch, dtype in json.loads(sys.argv[1]):
    run = step_gemms(widths, batch, np.random.default_rng(0), dtype=np.dtype(dtype))
    macs = forward_macs(widths, batch)
    us = best_us(lambda n: [run() for _ in range(n)], max(3, min(2000, int(2e8 // macs))))
    rows.append(us)
print(json.dumps([", ".join(map(str, arch)), rows]))
"""


def run_with(core):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    if core is not None:
        env["OPENBLAS_CORETYPE"] = core
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(CASES)], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(cores):
    from fastbp.cli.bench import machine, step_flops

    print(f"One training step's GEMMs, us (GF/s), 2 OpenBLAS threads, fresh process each; {machine()}:\n")
    header = ["OPENBLAS_CORETYPE", "kernels run"] + [f"{'-'.join(map(str, w))} b{b} {d}" for w, b, d in CASES]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for core in (None, *cores):
        arch, times = run_with(core)
        cells = [f"{us:.1f} ({step_flops(w, b) / us / 1e3:.0f})" for (w, b, _), us in zip(CASES, times)]
        print("| " + " | ".join(["unset (OpenBLAS's choice)" if core is None else core, arch] + cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["Haswell", "SkylakeX"])
