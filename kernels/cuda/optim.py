"""Parameter updates on the GPU, kernels/optim.py's SGD rule on flat device arrays."""
import functools

from numba import cuda, float32, float64

THREADS = 256


@functools.lru_cache(maxsize=None)
def sgd_kernel(dtype):
    element = float32 if dtype == "float32" else float64

    # param (n,), grad (n,), velocity (n,) or (0,) -> param, velocity updated
    @cuda.jit
    def sgd_update(param, grad, lr, momentum, velocity):
        i = cuda.grid(1)
        if i >= param.shape[0]:
            return
        if velocity.shape[0] == 0:
            param[i] -= element(lr) * grad[i]
        else:
            v = element(momentum) * velocity[i] + grad[i]
            velocity[i] = v
            param[i] -= element(lr) * v

    return sgd_update


def sgd_update(param, grad, lr, momentum, velocity, threads=THREADS):
    n = param.shape[0]
    if n:
        sgd_kernel(str(param.dtype))[(n + threads - 1) // threads, threads](param, grad, lr, momentum, velocity)
