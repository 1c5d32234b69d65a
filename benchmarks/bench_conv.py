"""Two 3x3 convolutions (1 -> 8 -> 16 channels, relu, padding 1) on a batch of
28x28 images: forward and backward, fastbp against torch's conv2d autograd.
(No textbook numpy version: a numpy convolution's backward is not something
people write by hand, and there is nothing to compare it with.)"""
import numpy as np

import fastbp

from .common import torch_threads


class Conv2DForwardBackward:
    params = (["fastbp", "torch"], [64])
    param_names = ["impl", "batch"]

    def setup(self, impl, batch):
        rng = np.random.default_rng(0)
        net = fastbp.Sequential(fastbp.Conv2D(1, 8, 3, padding=1, activation="relu", rng=rng),
                                fastbp.Conv2D(8, 16, 3, padding=1, activation="relu", rng=rng))
        x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
        grad_out = rng.standard_normal((batch, 16, 28, 28)).astype(np.float32)
        if impl == "fastbp":
            def run():
                net.forward(x)
                return net.backward(grad_out)
        else:
            torch = torch_threads()
            conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
            conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
            with torch.no_grad():
                for tconv, layer in ((conv1, net[0]), (conv2, net[1])):
                    tconv.weight.copy_(torch.from_numpy(layer.weights))
                    tconv.bias.copy_(torch.from_numpy(layer.bias))
            tx = torch.from_numpy(x).requires_grad_()
            tgrad = torch.from_numpy(grad_out)

            def run():
                conv1.zero_grad()
                conv2.zero_grad()
                tx.grad = None
                out = torch.relu(conv2(torch.relu(conv1(tx))))
                out.backward(tgrad)
                return tx.grad
        self.run = run
        self.run()

    def time_forward_backward(self, impl, batch):
        self.run()

    def peakmem_forward_backward(self, impl, batch):
        self.run()
