"""Training: one step through the layer API, one fused step, one epoch of fit.

numpy is fastbp.cli.baselines.NumpyMLP (the seed notebooks' style), torch is
nn.Sequential + optim.SGD, eager, and jax one jax.jit-compiled step
(fastbp.cli.baselines.jax_train_step) called from Python; all do the same
step (0.5 * sum of squared errors, plain SGD) from the same initial parameters.
"""
import numpy as np

import fastbp


from .common import IMPLS, NETWORKS, NumpyMLP, build, jax_train_step, network, torch_threads, torch_train_step

# Small enough that no implementation diverges over a benchmark's repeats.
LR = 1e-5


def _data(model, batch, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, model[0].in_features)).astype(np.float32)
    y = rng.uniform(0, 1, (batch, model[-1].out_features)).astype(np.float32)
    return x, y


def _baseline_step(impl, model, x, y):
    """The numpy, torch or JAX training step on a copy of `model`."""
    if impl == "numpy":
        net = NumpyMLP(model)
        return lambda: net.train_step(x, y, LR)
    if impl == "jax":
        import jax.numpy as jnp

        step = jax_train_step(model, LR)
        jx, jy = jnp.asarray(x), jnp.asarray(y)
        return lambda: step(jx, jy)
    torch = torch_threads()
    net = model.to_torch()
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    return lambda: torch_train_step(net, opt, tx, ty)


class LayerTrainStep:
    """forward, loss, backward and SGD step, called layer by layer."""
    params = (IMPLS, list(NETWORKS))
    param_names = ["impl", "network"]

    def setup(self, impl, name):
        model, batch = network(name)
        x, y = _data(model, batch)
        self.step = self._fastbp_step(model, x, y) if impl == "fastbp" else _baseline_step(impl, model, x, y)
        self.step()

    def _fastbp_step(self, model, x, y):
        loss = fastbp.MSELoss("half_sum")
        # forward, loss, backward and step called one by one: nothing is fused
        opt = fastbp.SGD(model.parameters(), lr=LR)

        def step():
            value = loss.forward(model.forward(x), y)
            model.backward(loss.backward())
            opt.step()
            return value
        return step

    def time_step(self, impl, name):
        self.step()

    def peakmem_step(self, impl, name):
        self.step()


class FusedTrainStep(LayerTrainStep):
    """Sequential.train_step: the whole step in one compiled call."""

    def _fastbp_step(self, model, x, y):
        loss = fastbp.MSELoss("half_sum")
        opt = fastbp.SGD(model.parameters(), lr=LR)
        return lambda: model.train_step(x, y, loss, opt)


class FusedOptimizerStep:
    """One fused step with each optimizer, and SGD with an L2 penalty,
    gradient clipping and dropout: all inside the compiled step."""
    params = (["SGD", "momentum", "Adam", "AdamW", "SGD+L2+clip+dropout"], list(NETWORKS))
    param_names = ["optimizer", "network"]

    def setup(self, optimizer, name):
        from fastbp.cli.bench import OPTIMIZERS

        make, l2, p = OPTIMIZERS[optimizer]
        widths, activations, batch = NETWORKS[name]
        model = build(widths, activations, dropout=p)
        x, y = _data(model, batch)
        loss = fastbp.MSELoss("half_sum")
        opt = make(model.parameters(), LR)
        model.train_step(x, y, loss, opt, fused=True, l2=l2)
        self.step = lambda: model.train_step(x, y, loss, opt, l2=l2)

    def time_step(self, optimizer, name):
        self.step()


class FitEpoch:
    """One epoch of mini-batch SGD over the seed-004 data (210 samples, batch 8),
    2-5-3 sigmoid network. fastbp's fit also records the epoch's accuracy."""
    params = (IMPLS,)
    param_names = ["impl"]

    def setup(self, impl):
        (x, labels), _ = fastbp.gaussian_blobs()
        x = x.astype(np.float32)
        y = fastbp.one_hot(labels, 3, np.float32)
        model = build((2, 5, 3), ("sigmoid", "sigmoid"))
        batch = 8
        if impl == "fastbp":
            loss = fastbp.MSELoss("half_sum")
            opt = fastbp.SGD(model.parameters(), lr=0.1)
            self.epoch = lambda: model.fit(x, y, loss=loss, optimizer=opt, epochs=1, batch_size=batch,
                                           rng=0)
        else:
            if impl == "numpy":
                net = NumpyMLP(model)
                step = lambda xb, yb: net.train_step(xb, yb, 0.1)  # noqa: E731
                convert = lambda a: a  # noqa: E731
            elif impl == "jax":
                import jax.numpy as jnp

                step = jax_train_step(model, 0.1)  # one jitted step per batch, from Python
                convert = jnp.asarray
            else:
                torch = torch_threads()
                net = model.to_torch()
                opt = torch.optim.SGD(net.parameters(), lr=0.1)
                step = lambda xb, yb: torch_train_step(net, opt, xb, yb)  # noqa: E731
                convert = torch.from_numpy
            tx, ty = convert(x), convert(y)
            rng = np.random.default_rng(0)

            def epoch():
                order = convert(rng.permutation(len(x)))
                for lo in range(0, len(x), batch):
                    idx = order[lo:lo + batch]
                    step(tx[idx], ty[idx])
            self.epoch = epoch
        self.epoch()

    def time_epoch(self, impl):
        self.epoch()

    def peakmem_epoch(self, impl):
        self.epoch()


class TabularEpoch:
    """One whole epoch (16 steps) at the widths of tabular work: fastbp's fit,
    a jitted JAX epoch (jax.lax.scan) and torch eager, softmax cross-entropy,
    SGD with momentum 0.9 (fastbp/cli/bench.py time_epochs times the same)."""
    params = (["fastbp", "jax", "torch"], ["64-32-32-10 b32", "64-128-128-10 b256", "64-512-512-10 b256"])
    param_names = ["impl", "network"]

    def setup(self, impl, name):
        from fastbp.cli.baselines import jax_epoch, torch_epoch
        from fastbp.cli.bench import EPOCH_CASES, epoch_data

        widths, batch = next((w, b) for n, w, b in EPOCH_CASES if n == name)
        x, labels, acts = epoch_data(widths, batch)
        model = build(widths, acts)
        if impl == "fastbp":
            opt = fastbp.SGD(model.parameters(), lr=0.01, momentum=0.9)
            loss = fastbp.CrossEntropyLoss()
            self.epoch = lambda: model.fit(x, labels, loss=loss, optimizer=opt, epochs=1, batch_size=batch,
                                           rng=0, progress=False)
        elif impl == "jax":
            import jax.numpy as jnp

            run = jax_epoch(model, 0.01, 0.9, batch)
            jx, jl = jnp.asarray(x), jnp.asarray(labels)
            order = jnp.asarray(np.random.default_rng(3).permutation(len(x)))
            self.epoch = lambda: run(jx, jl, order)
        else:
            torch = torch_threads()
            run = torch_epoch(model, 0.01, 0.9, batch)
            tx, tl = torch.from_numpy(x), torch.from_numpy(labels)
            self.epoch = lambda: run(tx, tl)
        self.epoch()  # compiled (numba, XLA) outside the timing

    def time_epoch(self, impl, name):
        self.epoch()
