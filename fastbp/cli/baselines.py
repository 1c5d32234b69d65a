"""The same training written the ways fastbp's users would otherwise write it:
textbook numpy (the seed notebooks' style), PyTorch eager and jitted JAX.
Used by the demo and the benchmarks to compare like with like (the torch
network itself is `model.to_torch()`); torch and JAX are imported only when
asked for.
"""
import functools

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


def jax_activation(name):
    """The JAX function of a fastbp activation name (JAX imported only when asked)."""
    import jax
    import jax.numpy as jnp

    return {"identity": lambda z: z, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}[name]


def _jax_mlp(model):
    """(params, forward) for a fastbp Sequential of Linear layers, in JAX."""
    import jax.numpy as jnp

    layers = list(model)
    params = [(jnp.asarray(layer.weights), jnp.asarray(layer.bias)) for layer in layers]
    functions = [jax_activation(layer.activation) for layer in layers]

    def forward(params, x):
        for (weights, bias), act in zip(params, functions):
            x = act(x @ weights + bias)
        return x
    return params, forward


def jax_train_step(model, lr):
    """step(x, y) -> loss: one jitted step (0.5 * sum of squared errors, SGD)
    on a copy of `model`'s parameters, the buffers donated, as a JAX user
    writes a training step."""
    import jax
    import jax.numpy as jnp

    params, forward = _jax_mlp(model)

    def loss_fn(params, x, y):
        return 0.5 * ((forward(params, x) - y) ** 2).sum()

    @functools.partial(jax.jit, donate_argnums=0)
    def update(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), loss
    state = {"params": jax.tree_util.tree_map(jnp.array, params)}  # its own buffers, since they are donated

    def step(x, y):
        state["params"], loss = update(state["params"], x, y)
        return float(loss)
    return step


def jax_epoch(model, lr, momentum, batch_size):
    """epoch(x, labels, order) -> mean loss: one jitted call that gathers the
    shuffled batches and runs them with jax.lax.scan (softmax cross-entropy,
    SGD with momentum as torch.optim.SGD), the state's buffers donated, the
    way a performance-minded JAX user writes an epoch; rows beyond the last
    whole batch are left out."""
    import jax
    import jax.numpy as jnp

    params, forward = _jax_mlp(model)
    velocity = jax.tree_util.tree_map(jnp.zeros_like, params)

    def loss_fn(params, x, labels):
        logits = forward(params, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

    def body(carry, batch):
        params, velocity = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        velocity = jax.tree_util.tree_map(lambda v, g: momentum * v + g, velocity, grads)
        params = jax.tree_util.tree_map(lambda p, v: p - lr * v, params, velocity)
        return (params, velocity), loss

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def run(params, velocity, x, labels, order):
        steps = order.shape[0] // batch_size
        order = order[:steps * batch_size]
        xs = x[order].reshape(steps, batch_size, x.shape[1])
        ys = labels[order].reshape(steps, batch_size)
        (params, velocity), losses = jax.lax.scan(body, (params, velocity), (xs, ys))
        return params, velocity, losses.mean()
    state = {"params": jax.tree_util.tree_map(jnp.array, params), "velocity": velocity}

    def epoch(x, labels, order):
        state["params"], state["velocity"], loss = run(state["params"], state["velocity"], x, labels, order)
        return float(loss)  # waits for the result
    return epoch


def torch_epoch(model, lr, momentum, batch_size):
    """epoch(x, labels): torch eager over a copy of `model` (`to_torch`),
    reshuffled each call, softmax cross-entropy and torch.optim.SGD with
    momentum: jax_epoch's training, the way a torch user writes it."""
    import torch

    net = model.to_torch()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)

    def epoch(x, labels):
        for rows in torch.randperm(x.shape[0]).split(batch_size):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x[rows]), labels[rows]).backward()
            optimizer.step()
    return epoch
