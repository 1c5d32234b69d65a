"""`python -m fastbp bench`: fastbp against textbook numpy, torch eager and
JAX, the same work in one process, side by side (torch and JAX needed: the
`bench` extra).

Six tables:
- steps: one training step (forward + 0.5*sum-of-squares loss + backward +
  SGD update), median us (see side_by_side), for
    fused   Sequential.train_step, the whole step in one compiled call
    layers  forward / loss / backward / step through the layer API
    numpy   fastbp.cli.baselines.NumpyMLP, the seed notebooks' style
    torch   nn.Sequential + optim.SGD, eager
    jax     one jax.jit-compiled step (value_and_grad + SGD), called from Python
    GEMMs   the step's matrix products alone (x W, x^T delta, delta W^T per
            layer) with the BLAS fastbp uses: the GEMM-bound limit
    torch GEMMs  the same products through torch.mm (torch's BLAS: MKL on
            x86): how much of a gap to torch is the BLAS itself
- optimizers: one fused training step with each optimizer (SGD, momentum,
  Nesterov, Adam, AdamW, and SGD with an L2 penalty, gradient clipping and
  dropout)
- epochs: whole epochs of fit at the widths of tabular work (64-32-32-10 to
  64-512-512-10, batch 32 and 256) against a jitted JAX epoch (jax.lax.scan)
  and torch eager, fastbp with its BLAS threads and with one; beside them
  the step's products alone (the GEMM-bound limit), the share of a large
  product's GF/s the step reaches, and fit's time beside a busy process
- forward: one dense layer act(x @ W + b), fastbp Linear.forward vs numpy vs torch vs jax.jit
- startup: seconds from `import fastbp` to the first finished train step in a
  fresh process, with an empty numba cache (cold) and a filled one (warm)
- sklearn: a whole MLPClassifier fit, scikit-learn's against fastbp.sklearn's
  (fastbp/cli/bench_sklearn.py), with each one's held-out accuracy

asv (benchmarks/) measures the same things per commit; this is the quick look.
"""
import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

from ..kernels._jit import jit
from .timing import build, side_by_side

STEP_CASES = [  # name, widths, activations, batch
    ("2-4-1 b8", (2, 4, 1), ("relu", "sigmoid"), 8),
    ("2-5-3 b210", (2, 5, 3), ("sigmoid", "sigmoid"), 210),
    ("784-256-256-10 b256", (784, 256, 256, 10), ("relu", "relu", "identity"), 256),
    ("1024-1024-1024 b1024", (1024, 1024, 1024), ("relu", "identity"), 1024),
]
OPTIMIZER_CASES = [STEP_CASES[0], ("2-5-3 b8", (2, 5, 3), ("sigmoid", "sigmoid"), 8), STEP_CASES[1],
                   STEP_CASES[2]]
# name -> (make the optimizer over params, l2, dropout after each hidden layer): each one fused
OPTIMIZERS = {
    "SGD": (lambda p, lr: _optim().SGD(p, lr=lr), 0.0, 0.0),
    "momentum": (lambda p, lr: _optim().SGD(p, lr=lr, momentum=0.9), 0.0, 0.0),
    "Nesterov": (lambda p, lr: _optim().SGD(p, lr=lr, momentum=0.9, nesterov=True), 0.0, 0.0),
    "Adam": (lambda p, lr: _optim().Adam(p, lr=lr), 0.0, 0.0),
    "AdamW": (lambda p, lr: _optim().AdamW(p, lr=lr), 0.0, 0.0),
    "SGD+L2+clip+dropout": (lambda p, lr: _optim().SGD(p, lr=lr, momentum=0.9, max_grad_norm=1.0), 1e-4, 0.1),
}
TABLES = ("steps", "optimizers", "epochs", "forward", "startup", "sklearn")
SKLEARN_MARKERS = ("<!-- bench:sklearn:start -->", "<!-- bench:sklearn:end -->")
# the widths of everyday tabular work: whole epochs of fit against a jitted
# JAX epoch (jax.lax.scan) and torch eager, 16 steps an epoch
EPOCH_CASES = [(f"{'-'.join(map(str, widths))} b{batch}", widths, batch)
               for widths in ((64, 32, 32, 10), (64, 128, 128, 10), (64, 512, 512, 10)) for batch in (32, 256)]
FORWARD_CASES = [(batch, width, act) for act in ("relu", "sigmoid")
                 for batch in (256, 4096) for width in (64, 1024)]


# The GEMM-bound limit is timed through numba's np.dot, the BLAS (scipy's
# OpenBLAS) and the transposes-as-flags calls the kernels themselves use.
@jit
def _gemm_nn(a, b, out):
    np.dot(a, b, out)


@jit
def _gemm_tn(a, b, out):
    np.dot(a.T, b, out)


@jit
def _gemm_nt(a, b, out):
    np.dot(a, b.T, out)


def step_gemms(widths, batch, rng, library="fastbp", dtype=np.float32, arrays=False):
    """A callable doing exactly one training step's GEMMs for this network,
    through fastbp's BLAS (numba's np.dot) or, with library="torch", torch.mm;
    with arrays=True, the tuples (xs, weights, grad_weights, grad_xs) instead."""
    xs = [rng.standard_normal((batch, w)).astype(dtype) for w in widths]
    weights = [rng.standard_normal((a, b)).astype(dtype) for a, b in zip(widths, widths[1:])]
    grad_weights = [np.empty_like(w) for w in weights]
    grad_xs = [np.empty_like(x) for x in xs]
    if arrays:
        return tuple(xs), tuple(weights), tuple(grad_weights), tuple(grad_xs)
    gemm_nn, gemm_tn, gemm_nt = _gemm_nn, _gemm_tn, _gemm_nt
    if library == "torch":
        import torch

        xs, weights, grad_weights, grad_xs = ([torch.from_numpy(a) for a in arrays]
                                              for arrays in (xs, weights, grad_weights, grad_xs))

        def gemm_nn(a, b, out):
            torch.mm(a, b, out=out)

        def gemm_tn(a, b, out):
            torch.mm(a.t(), b, out=out)

        def gemm_nt(a, b, out):
            torch.mm(a, b.t(), out=out)

    def run():
        for l, w in enumerate(weights):
            gemm_nn(xs[l], w, xs[l + 1])
        for l in reversed(range(len(weights))):
            gemm_tn(xs[l], xs[l + 1], grad_weights[l])
            if l:  # the first layer's input gradient is not needed
                gemm_nt(xs[l + 1], weights[l], grad_xs[l])
    return run


def time_steps(widths, activations, batch, budget_s=1.0):
    """{implementation: median us per training step} for one network."""
    import torch

    import jax.numpy as jnp

    from .. import SGD, MSELoss
    from .baselines import NumpyMLP, jax_train_step, torch_train_step

    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, widths[0])).astype(np.float32)
    y = rng.uniform(0, 1, (batch, widths[-1])).astype(np.float32)
    # Small enough that nothing diverges while timed (checked below): arithmetic
    # on inf / NaN would time something else.
    lr = 1e-5
    loss = MSELoss("half_sum")
    model = build(widths, activations)
    opt = SGD(model.parameters(), lr=lr)

    layered = build(widths, activations)
    layered_opt = SGD(layered.parameters(), lr=lr)

    numpy_net = NumpyMLP(build(widths, activations))
    tnet = build(widths, activations).to_torch()
    topt = torch.optim.SGD(tnet.parameters(), lr=lr)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    jax_step = jax_train_step(build(widths, activations), lr)
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    jax_step(jx, jy)  # compiles
    results = side_by_side({"fused": lambda: model.train_step(x, y, loss, opt),
                            "layers": lambda: layered.train_step(x, y, loss, layered_opt, fused=False),
                            "numpy": lambda: numpy_net.train_step(x, y, lr),
                            "torch": lambda: torch_train_step(tnet, topt, tx, ty),
                            "jax": lambda: jax_step(jx, jy),
                            "GEMMs": step_gemms(widths, batch, rng),
                            "torch GEMMs": step_gemms(widths, batch, rng, library="torch")}, budget_s)

    final = {"fused": model.train_step(x, y, loss, opt),
             "layers": loss.forward(layered.forward(x), y),
             "numpy": numpy_net.train_step(x, y, lr),
             "torch": torch_train_step(tnet, topt, tx, ty),
             "jax": jax_step(jx, jy)}
    bad = {k: v for k, v in final.items() if not np.isfinite(v)}
    if bad:
        raise RuntimeError(f"training diverged while timed, lower lr: {bad}")
    return results


def _optim():
    from .. import optim

    return optim


def time_optimizers(widths, activations, batch, budget_s=1.0):
    """{optimizer: median us per fused training step} for one network."""
    from .. import MSELoss

    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, widths[0])).astype(np.float32)
    y = rng.uniform(0, 1, (batch, widths[-1])).astype(np.float32)
    loss = MSELoss("half_sum")
    steps, finals = {}, {}
    for name, (make, l2, p) in OPTIMIZERS.items():
        model = build(widths, activations, dropout=p)
        opt = make(model.parameters(), 1e-5)
        model.train_step(x, y, loss, opt, fused=True, l2=l2)  # raises if this one could not be fused
        steps[name] = (lambda model, opt, l2: lambda: model.train_step(x, y, loss, opt, l2=l2))(model, opt, l2)
    results = side_by_side(steps, budget_s)
    for name, step in steps.items():
        finals[name] = step()
    bad = {k: v for k, v in finals.items() if not np.isfinite(v)}
    if bad:
        raise RuntimeError(f"training diverged while timed, lower lr: {bad}")
    return results


def epoch_data(widths, batch, steps=16):
    """(x, labels, activations) for the epochs table: `steps` batches of
    random float32 rows and class labels, ReLU hidden layers."""
    rng = np.random.default_rng(2)
    n = steps * batch
    x = rng.standard_normal((n, widths[0])).astype(np.float32)
    return x, rng.integers(0, widths[-1], n), ["relu"] * (len(widths) - 2) + ["identity"]


# `n` steps' products in one compiled call: from Python (step_gemms) each
# product would also pay numba's dispatch, a visible share at 32 rows. xs,
# weights, grad_weights, grad_xs: tuples of the layers' arrays, as
# step_gemms(..., arrays=True) makes them.
@jit
def _step_gemms_compiled(n, xs, weights, grad_weights, grad_xs):
    for _ in range(n):
        for l in range(len(weights)):
            np.dot(xs[l], weights[l], xs[l + 1])
        for l in range(len(weights) - 1, -1, -1):
            np.dot(xs[l].T, xs[l + 1], grad_weights[l])
            if l:
                np.dot(xs[l + 1], weights[l].T, grad_xs[l])


def forward_macs(widths, batch):
    """Multiply-adds of one forward pass over a batch: what
    fastbp.threads.blas_threads_for chooses the BLAS threads by."""
    return batch * sum(a * b for a, b in zip(widths, widths[1:]))


def step_flops(widths, batch):
    """Floating-point operations of one training step's products: x W and
    x^T delta for every layer, delta W^T for all but the first."""
    products = [a * b for a, b in zip(widths, widths[1:])]
    return 2 * batch * (2 * sum(products) + sum(products[1:]))


def gemm_gflops(size=1024, budget_s=0.5):
    """GF/s of one (size x size) @ (size x size) float32 product through
    fastbp's BLAS with its threads: the peak the epochs table's shares are of."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(np.float32) for _ in range(2))
    out = np.empty_like(a)
    us = side_by_side({"gemm": lambda: _gemm_nn(a, b, out)}, budget_s)["gemm"]
    return 2 * size ** 3 / us / 1e3


@contextlib.contextmanager
def beside_a_busy_process():
    """Meanwhile, a second process busy on one core, as another user's job would be."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        busy.kill()
        busy.wait()


def time_epochs(widths, batch, budget_s=1.0, steps=16):
    """{implementation: median us per step of a whole epoch}: fit (softmax
    cross-entropy, SGD with momentum 0.9) with the BLAS threads fastbp has and
    with one, a jitted JAX epoch, torch eager; ReLU hidden layers, float32.
    Also "GEMMs": the step's products alone, on the BLAS threads fit would
    use (fastbp.threads.blas_threads_for), and "busy" / "quiet": fit again
    beside a process busy on one core and without it, interleaved."""
    import jax.numpy as jnp
    import torch

    from .. import SGD, CrossEntropyLoss
    from ..threads import blas_threads_for, get_num_threads, set_num_threads
    from .baselines import jax_epoch, torch_epoch

    x, labels, acts = epoch_data(widths, batch, steps)
    lr, momentum, loss = 0.01, 0.9, CrossEntropyLoss()
    model = build(widths, acts)
    opt = SGD(model.parameters(), lr=lr, momentum=momentum)

    def fastbp_epoch():
        model.fit(x, labels, loss=loss, optimizer=opt, epochs=1, batch_size=batch, rng=0, progress=False)

    jax_run = jax_epoch(build(widths, acts), lr, momentum, batch)
    jx, jlabels = jnp.asarray(x), jnp.asarray(labels)
    jorder = jnp.asarray(np.random.default_rng(3).permutation(len(x)))
    torch_run = torch_epoch(build(widths, acts), lr, momentum, batch)
    tx, tlabels = torch.from_numpy(x), torch.from_numpy(labels)
    per_step = {"fastbp": fastbp_epoch, "jax": lambda: jax_run(jx, jlabels, jorder),
                "torch": lambda: torch_run(tx, tlabels)}
    results = {k: v / steps for k, v in side_by_side(per_step, budget_s).items()}
    threads = get_num_threads()
    set_num_threads(1)
    try:
        results["fastbp 1 thread"] = side_by_side({"one": fastbp_epoch}, budget_s / 3)["one"] / steps
    finally:
        set_num_threads(threads["numba"])
    gemm_args = step_gemms(widths, batch, np.random.default_rng(4), arrays=True)
    _step_gemms_compiled(1, *gemm_args)
    with blas_threads_for(forward_macs(widths, batch)):
        results["GEMMs"] = side_by_side({"gemms": lambda: _step_gemms_compiled(steps, *gemm_args)},
                                        budget_s / 3)["gemms"] / steps
    quiet, busy = [], []
    for _ in range(3):  # rounds, each quiet then busy: the machine's drift reaches both alike
        quiet.append(side_by_side({"quiet": fastbp_epoch}, budget_s / 6, 1)["quiet"] / steps)
        with beside_a_busy_process():
            busy.append(side_by_side({"busy": fastbp_epoch}, budget_s / 6, 1)["busy"] / steps)
    results["quiet"], results["busy"] = statistics.median(quiet), statistics.median(busy)
    return results


def time_forward(batch, width, activation, budget_s=0.5):
    """{implementation: median us} for one dense layer's forward, act(x @ W + b)."""
    import torch

    from .. import Linear
    from .baselines import NUMPY_ACTIVATIONS

    layer = Linear(width, width, activation=activation, rng=0)
    x = np.random.default_rng(1).standard_normal((batch, width)).astype(np.float32)
    act = NUMPY_ACTIVATIONS[activation][0]
    weights, bias = layer.weights.copy(), layer.bias.copy()
    t_act = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
             "identity": lambda z: z}[activation]
    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(weights), torch.from_numpy(bias)

    def torch_forward():
        with torch.no_grad():
            t_act(torch.addmm(tb, tx, tw))
    import jax
    import jax.numpy as jnp

    from .baselines import jax_activation

    j_act = jax_activation(activation)
    jax_forward = jax.jit(lambda x, w, b: j_act(x @ w + b))
    jx, jw, jb = jnp.asarray(x), jnp.asarray(weights), jnp.asarray(bias)
    jax_forward(jx, jw, jb).block_until_ready()  # compiles
    return side_by_side({"fastbp": lambda: layer.forward(x),
                         "numpy": lambda: act(x @ weights + bias),
                         "torch": torch_forward,
                         "jax": lambda: jax_forward(jx, jw, jb).block_until_ready()}, budget_s)


_FIRST_STEP = """
import json, sys, time
start = time.perf_counter()
compiles = []
widths, activation, batch = [int(w) for w in sys.argv[1].split("-")], sys.argv[2], int(sys.argv[3])
if sys.argv[4:] == ["--compile-times"]:
    # numba's compile events: each kernel's compile time, its callees' included
    from numba.core import event

    class Compiles(event.Listener):
        def on_start(self, ev):
            ev.data["dispatcher"]._fastbp_start = time.perf_counter()

        def on_end(self, ev):
            dispatcher = ev.data["dispatcher"]
            compiles.append((time.perf_counter() - dispatcher._fastbp_start, dispatcher.py_func.__name__))
    event.register("numba:compile", Compiles())
import numpy as np
import fastbp
model = fastbp.Sequential(*[fastbp.Linear(a, b, activation=activation) for a, b in zip(widths, widths[1:])])
optimizer = fastbp.SGD(model.parameters(), lr=0.1)
x = np.zeros((batch, widths[0]), np.float32)
y = np.zeros((batch, widths[-1]), np.float32)
model.train_step(x, y, fastbp.MSELoss(), optimizer)
print(json.dumps(sorted(compiles, reverse=True)[:8]))
print(time.perf_counter() - start)
"""


# (network, activation, batch): a narrow network (the batch-inner layout) and
# a tabular one (batch-major), each compiling only its own layout's kernels
STARTUP_CASES = (("2-5-3", "sigmoid", 8), ("64-128-10", "relu", 32))


def time_startup(network="2-5-3", activation="sigmoid", batch=8):
    """(cold, warm, compiles): seconds from `import fastbp` to a first finished
    train step of `network` (widths joined by "-"; MSE, SGD, float32), each in
    a fresh interpreter sharing one numba cache directory, and the cold run's
    longest kernel compiles as (seconds, name), each including the kernels it calls."""
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)

        def once(*flags):
            done = subprocess.run([sys.executable, "-c", _FIRST_STEP, network, activation, str(batch), *flags],
                                  env=env, check=True,
                                  capture_output=True, text=True)
            lines = done.stdout.strip().splitlines()
            return float(lines[-1]), json.loads(lines[-2])
        cold, compiles = once("--compile-times")
        warm = statistics.median(once()[0] for _ in range(3))
    return cold, warm, compiles


def machine():
    """The CPU's model name and the BLAS libraries fastbp and torch call."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    from ..threads import _blas_controller

    # scipy's own copy (numba's np.dot calls it), in its wheel's scipy.libs
    # folder; numpy's is another build
    blas = sorted({f"{d['internal_api']} {d.get('version')} ({d.get('architecture')})"
                   for d in _blas_controller().info()
                   if d["user_api"] == "blas" and f"scipy.libs{os.sep}" in d["filepath"]})
    torch_blas = "MKL" if torch.backends.mkl.is_available() else "its bundled BLAS"
    # OPENBLAS_CORETYPE overrides OpenBLAS's own choice of kernels, which can
    # change a GEMM-bound row several-fold (python benchmarks/blas_core.py)
    forced = os.environ.get("OPENBLAS_CORETYPE")
    forced = f" (OPENBLAS_CORETYPE={forced} set)" if forced else ""
    return (f"{cpu}, {os.cpu_count()} cores; fastbp's BLAS {', '.join(blas) or 'unknown'}{forced}, "
            f"torch's {torch_blas}")


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastbp bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=TABLES, action="append",
                        help="run only these tables (repeatable)")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per timing (default 1)")
    parser.add_argument("--readme", metavar="PATH",
                        help="also write the training-step summary into PATH between its "
                             "<!-- bench:start --> / <!-- bench:end --> markers")
    parser.add_argument("--docs", metavar="PATH",
                        help="also write every table into PATH between the same markers")
    parser.add_argument("--deterministic", action="store_true",
                        help="time with fastbp.set_deterministic(True) (BLAS on one thread)")
    args = parser.parse_args(argv)
    if not (math.isfinite(args.budget) and args.budget > 0):
        parser.error(f"--budget must be a positive number of seconds, got {args.budget}")
    for flag, path in (("--readme", args.readme), ("--docs", args.docs)):
        if path:
            # before the benchmark runs, not after: its minutes would be lost
            _markers(path, flag, parser.error)
    if args.readme and "sklearn" in (args.only or TABLES):
        _markers(args.readme, "--readme", parser.error, *SKLEARN_MARKERS)
    if args.readme and args.only and not {"steps", "sklearn"} & set(args.only):
        parser.error("--readme writes the training-step and sklearn tables: --only steps or sklearn")
    try:
        import torch
    except ImportError:
        raise SystemExit("fastbp bench compares with torch: pip install 'fastbp[bench]' "
                         "(torch==2.13.0)") from None
    import numba

    from ..threads import get_num_threads, set_deterministic

    set_deterministic(args.deterministic)
    only = set(args.only or TABLES)
    torch.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    lines = []

    def emit(text=""):
        print(text, flush=True)
        lines.append(text)
    emit(f"float32, median of repeats, one process. numba {numba.__version__} "
         f"(threads {get_num_threads()}), torch {torch.__version__} ({torch.get_num_threads()} "
         f"threads), numpy {np.__version__}. {machine()}\n")
    summary = []
    if "steps" in only:
        rows = []
        for name, widths, acts, batch in STEP_CASES:
            r = time_steps(widths, acts, batch, args.budget)
            summary.append([name, f"{r['fused']:.1f}", f"{r['numpy']:.1f}", f"{r['torch']:.1f}",
                            f"{r['jax']:.1f}", f"{r['numpy'] / r['fused']:.1f}x", f"{r['torch'] / r['fused']:.1f}x",
                            f"{r['jax'] / r['fused']:.1f}x"])
            rows.append([name] + [f"{r[k]:.1f}" for k in ("fused", "layers", "numpy", "torch", "jax", "GEMMs",
                                                          "torch GEMMs")]
                        + [f"{r['torch'] / r['fused']:.1f}x", f"{r['jax'] / r['fused']:.1f}x",
                           f"{r['numpy'] / r['fused']:.2f}x",
                           f"{r['torch'] / r['layers']:.1f}x", f"{r['numpy'] / r['layers']:.2f}x",
                           f"{r['fused'] / r['GEMMs']:.2f}"])
        emit("One training step (us; jax: one jitted step, called from Python as a JAX user's loop does):\n")
        emit(_table(["network", "fused", "layers", "numpy", "torch", "jax", "GEMMs only", "torch GEMMs",
                      "torch/fused", "jax/fused", "numpy/fused", "torch/layers", "numpy/layers", "fused/GEMMs"],
                    rows))
        emit()
    if "optimizers" in only:
        rows = []
        for name, widths, acts, batch in OPTIMIZER_CASES:
            r = time_optimizers(widths, acts, batch, args.budget)
            rows.append([name] + [f"{r[k]:.1f}" for k in OPTIMIZERS]
                        + [f"{r['Adam'] / r['SGD']:.2f}", f"{r['SGD+L2+clip+dropout'] / r['SGD']:.2f}"])
        emit("One fused training step by optimizer (us; SGD+L2+clip+dropout: momentum 0.9, l2 1e-4, "
             "max_grad_norm 1, Dropout(0.1) after each hidden layer):\n")
        emit(_table(["network"] + list(OPTIMIZERS) + ["Adam/SGD", "L2+clip+dropout/SGD"], rows))
        emit()
    if "epochs" in only:
        rows = []
        peak = [gemm_gflops()]
        timed = [(name, widths, batch, time_epochs(widths, batch, args.budget))
                 for name, widths, batch in EPOCH_CASES]
        peak.append(gemm_gflops())
        for name, widths, batch, r in timed:
            best = min(r["fastbp"], r["fastbp 1 thread"])
            gflops = step_flops(widths, batch) / best / 1e3
            rows.append([name] + [f"{r[k]:.1f}" for k in ("fastbp", "fastbp 1 thread", "jax", "torch", "GEMMs")]
                        + [f"{r['jax'] / best:.2f}x", f"{r['torch'] / best:.1f}x", f"{r['jax'] / r['GEMMs']:.2f}x",
                           f"{gflops:.0f}", f"{gflops / max(peak):.0%}", f"{r['busy'] / r['quiet']:.2f}"])
        emit("Whole epochs of training, us per step (softmax cross-entropy, SGD with momentum 0.9, ReLU; "
             "fastbp's fit, a jitted jax.lax.scan epoch, torch eager; 16 steps an epoch). GEMMs only: the "
             "step's products alone, on the BLAS threads fit uses, so JAX / GEMMs is the most JAX / fastbp "
             "could be with every other pass free. GF/s: the step's products' operations over fastbp's best "
             f"time; of peak: of a 1024^3 float32 product's, which ran at {peak[0]:.0f} and {peak[1]:.0f} "
             "GF/s before and after the table (the faster taken). busy / quiet: fit beside a process busy "
             "on one core, over fit without it, interleaved:\n")
        emit(_table(["network", "fastbp", "fastbp 1 thread", "JAX jit", "torch", "GEMMs only",
                     "JAX / fastbp (best)", "torch / fastbp (best)", "JAX / GEMMs", "GF/s", "of peak",
                     "busy / quiet"], rows))
        emit()
    if "forward" in only:
        rows = []
        for batch, width, act in FORWARD_CASES:
            r = time_forward(batch, width, act, args.budget / 2)
            rows.append([f"{act} b{batch} {width}x{width}"]
                        + [f"{r[k]:.1f}" for k in ("fastbp", "numpy", "torch", "jax")]
                        + [f"{r['numpy'] / r['fastbp']:.2f}x", f"{r['torch'] / r['fastbp']:.2f}x",
                           f"{r['jax'] / r['fastbp']:.2f}x"])
        emit("One dense forward act(x @ W + b) (us):\n")
        emit(_table(["layer", "fastbp", "numpy", "torch", "jax jit", "numpy/fastbp", "torch/fastbp", "jax/fastbp"],
                    rows))
        emit()
    if "startup" in only:
        rows, longest = [], []
        for network, activation, batch in STARTUP_CASES:
            cold, warm, compiles = time_startup(network, activation, batch)
            rows.append([f"{network} {activation} b{batch}", f"{cold:.2f}", f"{warm:.2f}"])
            longest.append(compiles)
        emit("Fresh process, `import fastbp` to the first finished train step (MSE, SGD, float32; seconds):\n")
        emit(_table(["network", "numba cache empty (cold)", "filled (warm)"], rows))
        emit("\nThe cold runs' longest compiles (kernel and seconds, each with the kernels it calls):\n")
        emit(_table([row[0] for row in rows],
                    [[f"{name} {seconds:.2f}" for seconds, name in ranked] for ranked in zip(*longest)]))
    if "sklearn" in only:
        from .bench_sklearn import IMPLS, SKLEARN_CASES, time_sklearn

        rows = []
        for case in SKLEARN_CASES:
            r = time_sklearn(case)
            rows.append([case] + [f"{r[impl][0]:.3f}" for impl in IMPLS]
                        + [f"{r['sklearn'][0] / r[impl][0]:.1f}x" for impl in IMPLS[1:]]
                        + [" / ".join(f"{r[impl][1]:.3f}" for impl in IMPLS)])
        emit("\nA whole MLPClassifier fit, scikit-learn's against fastbp.sklearn's (seconds, median of 3 "
             "interleaved rounds; float64 as scikit-learn, and fastbp with dtype='float32'; plain SGD):\n")
        sklearn_table = _table(["training", "scikit-learn", "fastbp", "fastbp float32", "speed-up",
                                "speed-up float32", "test accuracy (same order)"], rows)
        emit(sklearn_table)
        if args.readme:
            write_section(args.readme, f"Seconds per fit, median of 3 interleaved rounds, plain SGD; {machine()}:\n\n"
                          + sklearn_table, "--readme", *SKLEARN_MARKERS)
    if args.docs:
        write_section(args.docs, "\n".join(lines), "--docs")
    if args.readme and "steps" in only:
        write_section(args.readme, f"One training step (forward, loss, backward, SGD), float32, us; "
                                   f"{machine()}, {get_num_threads()['numba']} threads:\n\n"
                      + _table(["network, batch", "fastbp", "numpy", "torch eager", "JAX jit", "numpy / fastbp",
                                "torch / fastbp", "JAX / fastbp"], summary), "--readme")
    return 0


def _markers(path, flag, error, start="<!-- bench:start -->", end="<!-- bench:end -->"):
    """The text of `path`, after checking it can be rewritten and has both markers."""
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        error(f"{flag} {path}: cannot read it ({exc})")
    if not os.access(path, os.W_OK):
        error(f"{flag} {path}: not writable")
    if start not in text or end not in text:
        error(f"{flag} {path} has no {start} ... {end} markers to write between")
    return text


def _exit(message):
    raise SystemExit(message)


def write_section(path, text, flag="--readme", start="<!-- bench:start -->", end="<!-- bench:end -->"):
    """Replace what lies between the two markers in `path` with `text`."""
    readme = _markers(path, flag, _exit, start, end)
    head, rest = readme.split(start, 1)
    tail = rest.split(end, 1)[1]
    with open(path, "w") as f:
        f.write(f"{head}{start}\n{text.strip()}\n{end}{tail}")
