"""One dense layer: the fused forward and the fused delta backward, fastbp
against numpy and torch doing the same arithmetic."""
import numpy as np

from .common import IMPLS, dense_layer, numpy_activation, torch_activation, torch_threads


class DenseForward:
    """out = act(x @ W + b) for a (batch, width) input and a width x width layer."""
    params = (IMPLS, [256, 4096], [64, 1024], ["relu", "sigmoid"])
    param_names = ["impl", "batch", "width", "activation"]

    def setup(self, impl, batch, width, activation):
        layer, x = dense_layer(batch, width, activation)
        if impl == "fastbp":
            self.forward = lambda: layer.forward(x)
        elif impl == "numpy":
            act = numpy_activation(activation)[0]
            weights, bias = layer.weights.copy(), layer.bias.copy()
            self.forward = lambda: act(x @ weights + bias)
        else:
            torch = torch_threads()
            act = torch_activation(torch, activation)
            tx, tw, tb = (torch.from_numpy(a.copy()) for a in (x, layer.weights, layer.bias))

            def forward():
                with torch.no_grad():
                    return act(torch.addmm(tb, tx, tw))
            self.forward = forward
        self.forward()  # compile (fastbp) and warm the BLAS threads outside the timing

    def time_forward(self, impl, batch, width, activation):
        self.forward()

    def peakmem_forward(self, impl, batch, width, activation):
        self.forward()


class DeltaBackward:
    """delta = grad_out * act'(out), grad_b = sum(delta), grad_W = x^T delta,
    grad_x = delta W^T, given the forward's output."""
    params = (IMPLS, [256, 4096], [64, 1024], ["relu", "sigmoid"])
    param_names = ["impl", "batch", "width", "activation"]

    def setup(self, impl, batch, width, activation):
        layer, x = dense_layer(batch, width, activation)
        out = layer.forward(x)
        grad_out = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
        if impl == "fastbp":
            self.backward = lambda: layer.backward(grad_out)
        elif impl == "numpy":
            act_grad = numpy_activation(activation)[1]
            weights = layer.weights.copy()

            def backward():
                delta = grad_out * act_grad(out)
                return delta.sum(axis=0), x.T @ delta, delta @ weights.T
            self.backward = backward
        else:
            torch = torch_threads()
            tx, tw, tout, tgrad = (torch.from_numpy(a.copy()) for a in (x, layer.weights, out, grad_out))
            act_grad = {"relu": lambda y: (y > 0).to(y.dtype), "sigmoid": lambda y: y * (1 - y),
                        "tanh": lambda y: 1 - y * y, "identity": lambda y: 1.0}[activation]

            def backward():
                delta = tgrad * act_grad(tout)
                return delta.sum(dim=0), tx.T @ delta, delta @ tw.T
            self.backward = backward
        self.backward()

    def time_backward(self, impl, batch, width, activation):
        self.backward()

    def peakmem_backward(self, impl, batch, width, activation):
        self.backward()
