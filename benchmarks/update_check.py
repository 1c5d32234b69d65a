"""What the finite-update check costs in a fused training step.

Before applying an update the compiled step computes it once without writing
(kernels/optim.py `update_is_finite`), so that an overflowing update
changes nothing. This times that pass on a network's flat buffers against the
whole step, for the README's known limits.

Run: python benchmarks/update_check.py (about 20 s). Medians of interleaved
rounds; the machine is shared, so compare within one run.
"""
import numpy as np

from common import build, machine, side_by_side
from fastbp import SGD, MSELoss
from fastbp.kernels import update_is_finite

CASES = [((2, 5, 3), ("sigmoid", "sigmoid"), 210),
         ((64, 128, 128, 10), ("relu", "relu", "identity"), 32),
         ((64, 512, 512, 10), ("relu", "relu", "identity"), 32),
         ((64, 512, 512, 10), ("relu", "relu", "identity"), 256),
         ((784, 256, 256, 10), ("relu", "relu", "identity"), 256)]


def main(rounds=9):
    print(f"{machine()}\n")
    print("| network, batch | step (us) | check (us) | check / step |")
    print("|---|---|---|---|")
    for widths, acts, batch in CASES:
        model = build(widths, acts)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, widths[0])).astype(np.float32)
        y = rng.standard_normal((batch, widths[-1])).astype(np.float32)
        opt = SGD(model.parameters(), lr=1e-4, momentum=0.9)
        loss = MSELoss()
        fused = model.fused

        def step():
            model.train_step(x, y, loss, opt)

        def check():
            update_is_finite(opt.kind, opt.hyper, opt.step_count + 1, fused.params, fused.grads, *opt.flat_state)
        times = side_by_side({"step": step, "check": check}, budget_s=0.2 * rounds, rounds=rounds)
        s, c = times["step"], times["check"]
        print(f"| {'-'.join(map(str, widths))} b{batch} | {s:.1f} | {c:.2f} | {c / s:.1%} |")


if __name__ == "__main__":
    main()
