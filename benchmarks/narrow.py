"""Times kernels/network.py's batch-major and batch-inner (narrow) training
steps side by side, to choose the narrow networks' layout (kernels/network.py is_narrow). Each step is timed inside one
compiled loop, so no Python dispatch is counted.
Run: python benchmarks/narrow.py"""
import numpy as np
from numba import njit

from common import best_us, build
from fastbp import MSELoss, SGD
from fastbp.kernels import network


@njit
def _loop_major(n, table, params, grads, state0, state1, hyper, x, target, labels, weights, outs, delta, grad_a,
                grad_b, grad_top):
    dropped = outs[:0]  # no dropout here: its workspace is empty
    for _ in range(n):
        network.batch_major_forward_backward(table, params, grads, x, target, labels, weights, 0, 2,
                                             outs, delta, grad_a, grad_b, grad_top, dropped)
        network.network_update(table, params, grads, state0, state1, 0, hyper, 1)


@njit
def _loop_narrow(n, table, params, grads, state0, state1, hyper, x, target, labels, weights, outs, delta,
                 grad_a, grad_b, grad_top, x_t):
    dropped = outs[:0]  # no dropout here: its workspace is empty
    for _ in range(n):
        network.narrow_forward_backward(table, params, grads, x, target, labels, weights, 0, 2,
                                        outs, delta, grad_a, grad_b, grad_top, x_t, dropped)
        network.network_update(table, params, grads, state0, state1, 0, hyper, 1)


def main():
    print("float32, us per step (forward + 0.5*sum-of-squares + backward + SGD), best of 7")
    print(f"{'network':>14s} {'batch':>6s} {'batch-major':>12s} {'batch-inner':>12s}")
    for widths, acts in [((2, 4, 1), ("relu", "sigmoid")), ((2, 5, 3), ("sigmoid", "sigmoid")),
                         ((4, 8, 8, 2), ("tanh", "relu", "identity")),
                         ((8, 16, 16, 4), ("tanh", "relu", "identity"))]:
        for batch in (1, 2, 4, 8, 16, 32, 210, 1024):
            model = build(widths, acts)
            fused = model.fused
            opt = SGD(model.parameters(), lr=1e-6)
            rng = np.random.default_rng(0)
            x = rng.standard_normal((batch, widths[0])).astype(np.float32)
            y = rng.standard_normal((batch, widths[-1])).astype(np.float32)
            model.train_step(x, y, MSELoss("half_sum"), opt)  # sizes the workspaces
            ws = network.split_workspace(fused.table, batch, fused._workspace(batch))
            args = (fused.table, fused.params, fused.grads, *opt.flat_state, opt.hyper, x, y, np.empty(0, np.int64),
                    np.empty(0))
            n = max(10, int(2e5 / batch))
            major = best_us(lambda k: _loop_major(k, *args, *ws[:5]), n)
            inner = best_us(lambda k: _loop_narrow(k, *args, *ws), n)
            name = "-".join(map(str, widths))
            print(f"{name:>14s} {batch:6d} {major:12.2f} {inner:12.2f}")


if __name__ == "__main__":
    main()
