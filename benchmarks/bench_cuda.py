"""The CUDA path against torch on CUDA: one dense layer's forward and backward,
and a training step of a 3-layer MLP (widths 64 and 256, batch 2^12 to 2^18).
Every combination skips (setup raises NotImplementedError) without a GPU."""
import numpy as np

import fastbp


def _require_gpu(impl):
    import numba
    from numba import cuda

    if numba.config.ENABLE_CUDASIM or not cuda.is_available():
        raise NotImplementedError("no NVIDIA GPU")
    if impl == "torch":
        import torch

        if not torch.cuda.is_available():
            raise NotImplementedError("torch has no CUDA here")


def _sync(impl):
    if impl == "torch":
        import torch

        torch.cuda.synchronize()
    else:
        from numba import cuda

        cuda.synchronize()


class CudaMLP:
    params = (["fastbp", "torch"], [64, 256], [2**12, 2**15, 2**18])
    param_names = ["impl", "width", "batch"]

    def setup(self, impl, width, batch):
        _require_gpu(impl)
        rng = np.random.default_rng(0)
        widths = (width, width, width, 10)
        model = fastbp.Sequential(*[fastbp.Linear(a, b, activation="relu" if b != 10 else None, rng=rng)
                                    for a, b in zip(widths, widths[1:])])
        x = rng.standard_normal((batch, width)).astype(np.float32)
        y = rng.standard_normal((batch, 10)).astype(np.float32)
        self.impl = impl
        if impl == "fastbp":
            from numba import cuda

            model.to("cuda")
            self.x, self.y = cuda.to_device(x), cuda.to_device(y)
            self.model, self.loss = model, fastbp.MSELoss()
            self.opt = fastbp.SGD(model.parameters(), lr=1e-4)
        else:
            import torch

            net = model.to_torch().cuda()
            self.x, self.y = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
            self.net, self.opt = net, torch.optim.SGD(net.parameters(), lr=1e-4)
        self.time_train_step(impl, width, batch)

    def time_forward(self, impl, width, batch):
        if impl == "fastbp":
            self.model.forward(self.x)
        else:
            import torch

            with torch.no_grad():
                self.net(self.x)
        _sync(impl)

    def time_train_step(self, impl, width, batch):
        if impl == "fastbp":
            self.model.train_step(self.x, self.y, self.loss, self.opt)
        else:
            import torch

            self.opt.zero_grad()
            loss = torch.nn.functional.mse_loss(self.net(self.x), self.y)
            loss.backward()
            self.opt.step()
            loss.item()  # fastbp's train_step returns the loss as a float too
        _sync(impl)
