"""Times the dense kernels' direct-loop and BLAS paths side by side, to choose
kernels/dense.py's DIRECT_LOOP_MAX_MACS. Run: python benchmarks/crossover.py"""
import importlib.util
import pathlib
import sys
import tempfile

import numpy as np

import fastbp.kernels.dense as dense
from common import best_us as _best_us, repeated


def _variant(name, condition):
    """A copy of kernels/dense.py whose path choice is forced to `condition`."""
    src = pathlib.Path(dense.__file__).read_text()
    src = src.replace("from ._jit import", "from fastbp.kernels._jit import")
    src = src.replace("from .activations import", "from fastbp.kernels.activations import")
    src = src.replace("batch * n_in * n_out <= DIRECT_LOOP_MAX_MACS", condition)
    path = pathlib.Path(tempfile.mkdtemp()) / f"dense_{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"dense_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_us(fn, number=300):
    return _best_us(repeated(fn), number, repeat=5)


def main():
    direct, blas = _variant("direct", "True"), _variant("blas", "batch == 0")
    rng = np.random.default_rng(0)
    print(f"{'B':>5} {'in':>4} {'out':>4} {'MACs':>8} | fwd direct   blas | bwd direct   blas")
    for batch in (8, 64, 210, 1024):
        for n_in, n_out in ((2, 5), (5, 3), (16, 16), (32, 32), (64, 64)):
            x = rng.standard_normal((batch, n_in)).astype(np.float32)
            w = rng.standard_normal((n_in, n_out)).astype(np.float32)
            b = rng.standard_normal(n_out).astype(np.float32)
            out = np.empty((batch, n_out), np.float32)
            g = rng.standard_normal((batch, n_out)).astype(np.float32)
            d, gw, gb, gx = np.empty_like(out), np.empty_like(w), np.empty_like(b), np.empty_like(x)
            times = [best_us(lambda m=m: m.dense_forward(x, w, b, 2, out)) for m in (direct, blas)]
            times += [best_us(lambda m=m: m.dense_backward(x, w, out, g, 2, True, d, gw, gb, gx))
                      for m in (direct, blas)]
            print(f"{batch:5d} {n_in:4d} {n_out:4d} {batch * n_in * n_out:8d} | "
                  f"{times[0]:10.2f} {times[1]:6.2f} | {times[2]:10.2f} {times[3]:6.2f}")
    print(f"current DIRECT_LOOP_MAX_MACS = {dense.DIRECT_LOOP_MAX_MACS}")


if __name__ == "__main__":
    sys.exit(main())
