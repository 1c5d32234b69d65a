"""The same training written the two ways fastbp's users would otherwise write it:
textbook numpy (the seed notebooks' style) and PyTorch eager. Used by the demo
and the benchmarks to compare like with like (the torch network itself is
`model.to_torch()`); torch is imported only when asked for.
"""
import numpy as np

NUMPY_ACTIVATIONS = {
    "identity": (lambda z: z, lambda y: 1.0),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda y: y * (1 - y)),
    "relu": (lambda z: np.maximum(z, 0), lambda y: (y > 0).astype(y.dtype)),
    "tanh": (np.tanh, lambda y: 1 - y * y),
}


class NumpyMLP:
    """A textbook numpy MLP: `x.dot(W) + b`, activation, gradients by hand,
    loss 0.5 * sum of squared errors (the seeds'), plain SGD."""

    def __init__(self, model):
        """Copies the architecture and parameters of a fastbp Sequential of Linear layers."""
        self.layers = [(layer.weights.copy(), None if layer.bias is None else layer.bias.copy(),
                        layer.activation) for layer in model]

    def forward(self, x):
        self.activations = [x]
        for weights, bias, act in self.layers:
            z = x.dot(weights)
            if bias is not None:
                z = z + bias
            x = NUMPY_ACTIVATIONS[act][0](z)
            self.activations.append(x)
        return x

    def train_step(self, x, y, lr):
        out = self.forward(x)
        loss = 0.5 * np.sum((out - y) ** 2)
        grad = out - y
        for i in reversed(range(len(self.layers))):
            weights, bias, act = self.layers[i]
            delta = grad * NUMPY_ACTIVATIONS[act][1](self.activations[i + 1])
            grad = delta.dot(weights.T)
            weights -= lr * self.activations[i].T.dot(delta)
            if bias is not None:
                bias -= lr * delta.sum(axis=0)
        return loss


def torch_train_step(net, optimizer, x, y):
    """One eager step on 0.5 * sum of squared errors; x, y torch tensors."""
    optimizer.zero_grad()
    loss = 0.5 * ((net(x) - y) ** 2).sum()
    loss.backward()
    optimizer.step()
    return loss.item()
