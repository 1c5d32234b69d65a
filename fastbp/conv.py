"""Layers beyond dense ones, enough for the seed-002 network: a 2-D convolution,
element-wise learnable weights and a flattening layer."""
import math
import numbers

import numpy as np

from . import kernels
from ._validation import as_float_array, check_dtype, check_positive_int, check_rng, numeric_array
from .kernels import conv, scale
from .layers import (Layer, Parameter, WeightedLayer, _dtype_name, _flag, _torch_dtype, _uniform,
                     activation_code, activation_layer, fixed, register, torch_numpy,
                     torch_parameter_dtype)


def _pair(value, name, *, minimum):
    """An int or a pair of ints, each >= minimum, as a pair."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))
                                 for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


@register
class Conv2D(WeightedLayer):
    """2-D convolution on NCHW batches (cross-correlation, like torch's conv2d),
    with the bias and activation fused into it.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride : int or (int, int), >= 1
    padding : int or (int, int), >= 0; zero padding on both sides
    activation : {None, "identity", "sigmoid", "relu", "tanh"}
    bias : bool
    dtype : float32 or float64
    rng : None, int or numpy.random.Generator
        Initialisation as `Linear`'s, with fan_in = in_channels * kernel area.

    Attributes
    ----------
    weights : (out_channels, in_channels, kernel_h, kernel_w), torch's layout
    bias : (out_channels,) or None
    grad_weights, grad_bias : same shapes, written by `backward`.
    """

    in_channels = fixed("in_channels")
    out_channels = fixed("out_channels")
    kernel_size = fixed("kernel_size")
    stride = fixed("stride")
    padding = fixed("padding")
    activation = fixed("activation")
    dtype = fixed("dtype")

    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0,
                 activation=None, bias=True, dtype=np.float32, rng=None):
        self._in_channels = check_positive_int(in_channels, "in_channels")
        self._out_channels = check_positive_int(out_channels, "out_channels")
        self._kernel_size = _pair(kernel_size, "kernel_size", minimum=1)
        self._stride = _pair(stride, "stride", minimum=1)
        self._padding = _pair(padding, "padding", minimum=0)
        self._geometry = self.kernel_size + self.stride + self.padding
        self._act = activation_code(activation)
        self._activation = kernels.ACTIVATION_NAMES[self._act]
        self._dtype = check_dtype(dtype)
        rng = check_rng(rng)
        area = self.kernel_size[0] * self.kernel_size[1]
        fan_in, fan_out = self.in_channels * area, self.out_channels * area
        bound = math.sqrt(6.0 / fan_in) if self._act == kernels.RELU else math.sqrt(6.0 / (fan_in + fan_out))
        self._weights = _uniform(rng, bound, (self.out_channels, self.in_channels) + self.kernel_size,
                                 self.dtype)
        self._grad_weights = np.zeros_like(self._weights)
        self._bias = _uniform(rng, 1 / math.sqrt(fan_in), self.out_channels, self.dtype) if bias else None
        self._grad_bias = None if self._bias is None else np.zeros_like(self._bias)
        self._bias_or_empty = np.empty(0, self.dtype) if self._bias is None else self._bias
        self._grad_bias_or_empty = np.empty(0, self.dtype) if self._bias is None else self._grad_bias
        self.input = self.output = self._cols_t = None
        self._buffers = {}

    def _buffer(self, name, shape):
        """A workspace kept from call to call while its shape stays the same:
        the columns take batch * positions * K values, and fresh pages for
        them cost as much as filling them."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != shape:
            buffer = self._buffers[name] = np.empty(shape, self.dtype)
        return buffer

    def output_shape(self, height, width):
        """(out_h, out_w) for an input of height x width."""
        return conv.conv_output_size(height, width, self._geometry)

    def forward(self, x):
        """x: (batch, in_channels, height, width) -> (batch, out_channels, out_h, out_w)."""
        x = as_float_array(x, "x", self.dtype, (None, self.in_channels, None, None))
        batch, _, height, width = x.shape
        out_h, out_w = self.output_shape(height, width)
        if min(out_h, out_w) < 1:
            raise ValueError(f"x: a {height}x{width} input is smaller than the {self.kernel_size} kernel "
                             f"with padding {self.padding}")
        cols_t = self._buffer("cols_t", (self._weights[0].size, batch * out_h * out_w))
        out_t = self._buffer("out_t", (self.out_channels, batch * out_h * out_w))
        out = np.empty((batch, self.out_channels, out_h, out_w), self.dtype)
        conv.conv2d_forward(x, self._weights.reshape(self.out_channels, -1), self._bias_or_empty,
                            self._act, self._geometry, cols_t, out_t, out)
        self.input, self.output, self._cols_t = x, out, cols_t
        return out

    def backward(self, grad_out):
        """grad_out: like the last output -> gradient for x; writes grad_weights / grad_bias."""
        if self.output is None:
            raise RuntimeError("backward called before forward: there is no input to differentiate at")
        grad_out = as_float_array(grad_out, "grad_out", self.dtype, self.output.shape)
        delta_t = self._buffer("delta_t", (self.out_channels, self._cols_t.shape[1]))
        grad_cols_t = self._buffer("grad_cols_t", self._cols_t.shape)
        grad_x = np.empty_like(self.input)
        conv.conv2d_backward(self._weights.reshape(self.out_channels, -1), self._cols_t, self.output,
                             grad_out, self._act, self._geometry, True, delta_t,
                             self._grad_weights.reshape(self.out_channels, -1),
                             self._grad_bias_or_empty, grad_cols_t, grad_x)
        return grad_x

    # -- checkpoints and torch ---------------------------------------------------
    torch_module = "Conv2d"
    fuses_activation = True

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "activation": self.activation,
                "bias": self._bias is not None, "dtype": self.dtype.name}

    @classmethod
    def parameter_shapes(cls, config):
        n_out = check_positive_int(config["out_channels"], "out_channels")
        n_in = check_positive_int(config["in_channels"], "in_channels")
        kernel = _pair(config["kernel_size"], "kernel_size", minimum=1)
        _pair(config["stride"], "stride", minimum=1), _pair(config["padding"], "padding", minimum=0)
        dtype = _dtype_name(config)
        shapes = {"weights": ((n_out, n_in) + kernel, dtype)}
        if _flag(config, "bias"):
            shapes["bias"] = ((n_out,), dtype)
        return shapes

    def to_onnx(self, graph, x):
        inputs = [x, graph.constant(self._weights, "weights")]
        if self._bias is not None:
            inputs.append(graph.constant(self._bias, "bias"))
        out = graph.node("Conv", inputs, kernel_shape=list(self.kernel_size), strides=list(self.stride),
                         pads=list(self.padding) * 2)
        return graph.activation(self.activation, out)

    def onnx_input_shape(self):
        return ["batch", self.in_channels, "height", "width"]

    def to_torch(self):
        import torch

        m = torch.nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                            padding=self.padding, bias=self._bias is not None, dtype=_torch_dtype(self.dtype))
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(self._weights.copy()))
            if self._bias is not None:
                m.bias.copy_(torch.from_numpy(self._bias.copy()))
        return [m] + activation_layer(self.activation).torch_modules()

    @classmethod
    def from_torch_module(cls, m, activation):
        if m.dilation != (1, 1) or m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise ValueError(f"only Conv2d with numeric zero padding, dilation 1 and groups 1 converts, "
                             f"got {m}")
        layer = cls(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                    activation=activation, bias=m.bias is not None, dtype=torch_parameter_dtype(m.weight))
        layer.weights = torch_numpy(m.weight)
        if m.bias is not None:
            layer.bias = torch_numpy(m.bias)
        return layer

    def __repr__(self):
        return (f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, activation={self.activation!r}, "
                f"bias={self._bias is not None}, dtype={self.dtype.name})")


@register
class Scale(Layer):
    """Element-wise learnable weights: out = x * weights, for x of shape
    (batch, *shape) (the seed-002 notebook's `L1A * w2`).

    weights start at 1 (the identity), or at `init` when given.
    """

    shape = fixed("shape")
    dtype = fixed("dtype")

    def __init__(self, shape, *, init=None, dtype=np.float32):
        if isinstance(shape, numbers.Integral):
            shape = (shape,)
        elif not isinstance(shape, (tuple, list)):
            raise TypeError(f"shape must be an int or a tuple of ints, got {type(shape).__name__} {shape!r}")
        shape = tuple(shape)
        self._shape = tuple(check_positive_int(s, f"shape[{i}]") for i, s in enumerate(shape))
        if not self.shape:
            raise ValueError("shape must name at least one feature dimension, got ()")
        self._dtype = check_dtype(dtype)
        self._weights = np.ones(self.shape, self.dtype)
        if init is not None:
            self.weights = init
        self._grad_weights = np.zeros_like(self._weights)
        self.input = self.output = None

    @property
    def weights(self):
        return self._weights

    @weights.setter
    def weights(self, value):
        self._weights[...] = as_float_array(value, "weights", self.dtype, self.shape)

    @property
    def grad_weights(self):
        return self._grad_weights

    def parameters(self):
        return [Parameter("weights", self)]

    def forward(self, x):
        """x: (batch, *shape) -> x * weights, same shape."""
        x = as_float_array(x, "x", self.dtype, (None,) + self.shape)
        out = np.empty_like(x)
        rows = (x.shape[0], self._weights.size)  # not (batch, -1): numpy cannot infer -1 for batch 0
        scale.scale_forward(x.reshape(rows), self._weights.reshape(-1), out.reshape(rows))
        self.input, self.output = x, out
        return out

    def backward(self, grad_out):
        if self.output is None:
            raise RuntimeError("backward called before forward: there is no input to differentiate at")
        grad_out = as_float_array(grad_out, "grad_out", self.dtype, self.output.shape)
        grad_x = np.empty_like(grad_out)
        rows = (grad_out.shape[0], self._weights.size)
        scale.scale_backward(self.input.reshape(rows), self._weights.reshape(-1), grad_out.reshape(rows),
                             self._grad_weights.reshape(-1), grad_x.reshape(rows))
        return grad_x

    def config(self):
        return {"shape": list(self.shape), "dtype": self.dtype.name}

    @classmethod
    def parameter_shapes(cls, config):
        shape = config["shape"]
        if not isinstance(shape, list) or not shape:
            raise ValueError(f"shape must be a non-empty list of ints, got {shape!r}")
        return {"weights": (tuple(check_positive_int(s, f"shape[{i}]") for i, s in enumerate(shape)),
                            _dtype_name(config))}

    def to_onnx(self, graph, x):
        return graph.node("Mul", [x, graph.constant(self._weights, "weights")])

    def onnx_input_shape(self):
        return ["batch", *self.shape]

    def to_torch(self):
        raise TypeError("Scale has no torch module; multiply by a Parameter instead")

    def __repr__(self):
        return f"Scale({self.shape}, dtype={self.dtype.name})"


@register
class Flatten(Layer):
    """(batch, *features) -> (batch, prod(features)), and back in backward."""

    def __init__(self):
        self.input_shape = None

    def forward(self, x):
        x = numeric_array(x, "x")
        if x.ndim < 1:
            raise ValueError(f"x must have a batch dimension, got shape {x.shape}")
        self.input_shape = x.shape
        # not (batch, -1): numpy cannot infer -1 for an empty batch
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64)))

    def backward(self, grad_out):
        if self.input_shape is None:
            raise RuntimeError("backward called before forward: there is no input shape to restore")
        grad_out = numeric_array(grad_out, "grad_out")
        want = (self.input_shape[0], int(np.prod(self.input_shape[1:], dtype=np.int64)))
        if grad_out.shape != want:
            raise ValueError(f"grad_out must have shape {want}, got {grad_out.shape}")
        return grad_out.reshape(self.input_shape)

    torch_module = "Flatten"

    def to_onnx(self, graph, x):
        return graph.node("Flatten", [x], axis=1)

    def onnx_input_shape(self):
        return None

    def to_torch(self):
        import torch

        return [torch.nn.Flatten()]

    @classmethod
    def from_torch_module(cls, m, activation):
        if m.start_dim != 1 or m.end_dim != -1:
            raise ValueError(f"only Flatten(start_dim=1, end_dim=-1) converts, got {m}")
        return cls()

    def __repr__(self):
        return "Flatten()"
