"""One dense layer: the fused forward and the fused delta backward, fastbp
against numpy, torch and jitted JAX doing the same arithmetic."""
import numpy as np

from .common import IMPLS, dense_layer, jax_activation, numpy_activation, torch_activation, torch_threads


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
        elif impl == "jax":
            import jax
            import jax.numpy as jnp

            act = jax_activation(activation)
            forward = jax.jit(lambda x, w, b: act(x @ w + b))
            jx, jw, jb = (jnp.asarray(a) for a in (x, layer.weights, layer.bias))
            self.forward = lambda: forward(jx, jw, jb).block_until_ready()
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
        elif impl == "jax":
            import jax
            import jax.numpy as jnp

            act_grad = {"relu": lambda y: (y > 0).astype(y.dtype), "sigmoid": lambda y: y * (1 - y)}[activation]

            @jax.jit
            def jax_backward(x, weights, out, grad_out):
                delta = grad_out * act_grad(out)
                return delta.sum(axis=0), x.T @ delta, delta @ weights.T
            jargs = tuple(jnp.asarray(a) for a in (x, layer.weights, out, grad_out))
            self.backward = lambda: jax.block_until_ready(jax_backward(*jargs))
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
