"""fastbp against textbook numpy and torch eager, one process, side by side.

One training step (forward + loss + backward + SGD update, float32, 0.5*sum
of squared errors) per network, median of repeats, in microseconds:
  fastbp fused  - Sequential.train_step: the whole step in one compiled call
  fastbp layers - forward / loss / backward / step through the layer API
  numpy         - fastbp.baselines.NumpyMLP, the seed notebooks' style
  torch         - nn.Sequential + optim.SGD, eager
Run: python benchmarks/compare.py [--markdown]
"""
import argparse
import statistics
import time

import numpy as np

import fastbp
from fastbp.baselines import NumpyMLP, torch_mlp, torch_train_step

CASES = [  # name, widths, activations, batch
    ("2-4-1 relu,sigmoid b8", (2, 4, 1), ("relu", "sigmoid"), 8),
    ("2-5-3 sigmoid b210", (2, 5, 3), ("sigmoid", "sigmoid"), 210),
    ("784-256-256-10 relu b256", (784, 256, 256, 10), ("relu", "relu", "identity"), 256),
]


def build(widths, activations, seed=0):
    rng = np.random.default_rng(seed)
    return fastbp.Sequential(*[fastbp.Linear(a, b, activation=act, rng=rng)
                               for a, b, act in zip(widths, widths[1:], activations)])


def median_us(step, budget_s=1.0):
    step()
    step()
    start = time.perf_counter()
    step()
    once = max(time.perf_counter() - start, 1e-7)
    inner = max(1, int(0.02 / once))
    samples = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        for _ in range(inner):
            step()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples) * 1e6


def run_case(widths, activations, batch):
    import torch

    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, widths[0])).astype(np.float32)
    y = rng.uniform(0, 1, (batch, widths[-1])).astype(np.float32)
    # small enough that no implementation diverges while it is timed (checked below):
    # arithmetic on inf / NaN would time something else
    lr = 1e-5
    results = {}

    model = build(widths, activations)
    loss = fastbp.MSELoss("half_sum")
    opt = fastbp.SGD(model.parameters(), lr=lr)
    results["fastbp fused"] = median_us(lambda: model.train_step(x, y, loss, opt))

    layered = build(widths, activations)
    layered_opt = fastbp.SGD(layered.parameters()[::-1], lr=lr)  # not one flat buffer: no fusion

    def layer_step():
        loss.forward(layered.forward(x), y)
        layered.backward(loss.backward())
        layered_opt.step()
    results["fastbp layers"] = median_us(layer_step)

    numpy_net = NumpyMLP(build(widths, activations))
    results["numpy"] = median_us(lambda: numpy_net.train_step(x, y, lr))

    tnet = torch_mlp(build(widths, activations))
    topt = torch.optim.SGD(tnet.parameters(), lr=lr)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    results["torch"] = median_us(lambda: torch_train_step(tnet, topt, tx, ty))

    final = {"fastbp fused": model.train_step(x, y, loss, opt),
             "fastbp layers": loss.forward(layered.forward(x), y),
             "numpy": numpy_net.train_step(x, y, lr),
             "torch": torch_train_step(tnet, topt, tx, ty)}
    bad = {k: v for k, v in final.items() if not np.isfinite(v)}
    if bad:
        raise RuntimeError(f"training diverged while timed, lower lr: {bad}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    import numba
    import torch

    torch.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    rows = [(name, run_case(widths, acts, batch)) for name, widths, acts, batch in CASES]
    impls = list(rows[0][1])
    print(f"one train step, float32, median us; numba {numba.__version__} "
          f"({numba.config.NUMBA_NUM_THREADS} threads), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}")
    if args.markdown:
        print("\n| network | " + " | ".join(impls) + " | torch / fused | numpy / fused | torch / layers | numpy / layers |")
        print("|---" * (len(impls) + 5) + "|")
    for name, res in rows:
        fused, layers = res["fastbp fused"], res["fastbp layers"]
        ratios = [res["torch"] / fused, res["numpy"] / fused, res["torch"] / layers, res["numpy"] / layers]
        if args.markdown:
            print(f"| {name} | " + " | ".join(f"{res[i]:.1f}" for i in impls) + " | "
                  + " | ".join(f"{r:.1f}x" for r in ratios) + " |")
        else:
            print(f"{name:26s} " + "  ".join(f"{i} {res[i]:9.1f}" for i in impls)
                  + "  | torch/fused {:.1f}x numpy/fused {:.1f}x torch/layers {:.1f}x numpy/layers {:.1f}x".format(*ratios))


if __name__ == "__main__":
    main()
