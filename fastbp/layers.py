"""Layers with the seed notebooks' protocol: batch-first row vectors,
`forward(x)` / `backward(grad_out)` (also spelled `forward_pass` /
`backward_pass`), weights shaped (in_features, out_features).

`backward` overwrites `grad_weights` / `grad_bias` (it does not accumulate as
torch does), exactly like the notebooks' layers.
"""
import math

import numpy as np

from . import _cuda, kernels
from .kernels import dropout
from ._backend import backend, backend_of
from ._cuda import check_device
from ._validation import (as_float_array, check_choice, check_dtype, check_finite_float, check_positive_int,
                          check_rng, float_dtype_of)

ACTIVATIONS = {None: kernels.IDENTITY, "identity": kernels.IDENTITY, "linear": kernels.IDENTITY,
               "sigmoid": kernels.SIGMOID, "relu": kernels.RELU, "tanh": kernels.TANH}


def activation_code(activation):
    return ACTIVATIONS[check_choice(activation, "activation", tuple(ACTIVATIONS))]


class Parameter:
    """One trainable array of a layer (`value`) and its gradient (`grad`).

    Both are read from the layer each time (its ``_<name>`` and
    ``_grad_<name>`` arrays), so a Parameter follows the layer when a
    Sequential packs it into flat buffers: an optimizer built on a layer's
    parameters before the model keeps training the model's arrays.
    """

    __slots__ = ("name", "layer", "_value_attr", "_grad_attr")

    def __init__(self, name, layer):
        self.name, self.layer = name, layer
        self._value_attr, self._grad_attr = "_" + name, "_grad_" + name

    @property
    def value(self):
        return getattr(self.layer, self._value_attr)

    @property
    def grad(self):
        return getattr(self.layer, self._grad_attr)

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={self.value.shape}, dtype={self.value.dtype})"


LAYER_TYPES = {}  # checkpoint name -> layer class, filled by @register
SAVED_AS = {}  # layer class -> checkpoint name


def register(cls=None, *, saved_as=None):
    """Class decorator: make a layer type known to checkpoints (under its
    class name, or `saved_as` for a class that saves as another) and to
    `from_torch` (through its `torch_module`). A new layer type needs this
    line and the methods of `Layer` below, nothing elsewhere."""
    def add(cls):
        name = saved_as or cls.__name__
        SAVED_AS[cls] = name
        if saved_as is None:
            LAYER_TYPES[name] = cls
        return cls
    return add if cls is None else add(cls)


class Layer:
    """Protocol shared by all layers.

    `config` / `from_config` / `parameter_shapes` let checkpoints save and
    rebuild a layer without knowing its type; `to_torch` and
    `from_torch_module` (for the torch class named by `torch_module`) let
    interop convert it.
    """

    torch_module = None  # the torch.nn class name this layer converts from, if any
    fuses_activation = False  # whether from_torch hands it the activation that follows it

    def __getstate__(self):
        # pickle and copy.deepcopy: the layer with arrays of its own (views of
        # a model's flat buffers are copied); a Sequential restored around it
        # packs it again
        state = self.__dict__.copy()
        if "_packed_in" in state:
            state["_packed_in"] = None
        return state

    def config(self):
        """The constructor arguments that rebuild this layer, as JSON values."""
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def parameter_shapes(cls, config):
        """{name: (shape, dtype name)} of the parameters a layer built from
        `config` has, checked and computed without building it (so that a
        checkpoint's claims can be checked before anything is allocated)."""
        return {}

    def to_torch(self):
        """A list of torch.nn modules computing what this layer computes."""
        raise TypeError(f"{type(self).__name__} has no torch equivalent that to_torch knows")

    def to_onnx(self, graph, x):
        """The name of this layer's output after adding its ONNX nodes for
        input `x` to `graph` (fastbp/onnx_export.py)."""
        raise TypeError(f"{type(self).__name__} has no ONNX equivalent that to_onnx knows")

    def onnx_input_shape(self):
        """The ONNX input shape this layer fixes ("batch" symbolic), None for
        any rank, or False when it takes its input's shape as it comes."""
        return False

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError

    def forward_pass(self, x, training=True):
        return self.forward(x)

    def backward_pass(self, grad_out):
        return self.backward(grad_out)

    def __call__(self, x):
        return self.forward(x)

    def parameters(self):
        return []


def fixed(name, doc=None):
    """A read-only attribute stored as ``_<name>``: what a layer's kernels and
    its model's flat buffers were built for cannot change afterwards (build a
    new layer instead)."""
    attr = "_" + name

    def get(self):
        return getattr(self, attr)

    def refuse(self, value):
        raise AttributeError(f"{type(self).__name__}.{name} is fixed when the layer is built (its arrays "
                             f"and any model holding it were made for it); build a new layer instead")
    return property(get, refuse, doc=doc)


def _uniform(rng, bound, shape, dtype):
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _assign(target, value, name, dtype, shape):
    """Copy `value` into the parameter array `target` (host or GPU), checked."""
    backend_of(target).assign(target, value, name, dtype, shape)


class WeightedLayer(Layer):
    """A layer with `weights` and an optional `bias`, and their gradients,
    kept in `_weights`, `_bias`, `_grad_weights`, `_grad_bias`."""

    @property
    def weights(self):
        return self._weights

    @weights.setter
    def weights(self, value):
        # Copied into the layer's own array (cast to its dtype), so optimizers
        # holding it stay valid and the caller's array is never aliased.
        _assign(self._weights, value, "weights", self.dtype, tuple(self._weights.shape))

    @property
    def bias(self):
        return self._bias

    @bias.setter
    def bias(self, value):
        if self._bias is None:
            raise ValueError("bias: this layer was built with bias=False")
        _assign(self._bias, self._bias_value(value), "bias", self.dtype, tuple(self._bias.shape))

    def _bias_value(self, value):
        """What to copy into the bias, from what the user assigned."""
        return value

    @property
    def grad_weights(self):
        return self._grad_weights

    @property
    def grad_bias(self):
        return self._grad_bias

    def parameters(self):
        params = [Parameter("weights", self)]
        if self._bias is not None:
            params.append(Parameter("bias", self))
        return params


def _dtype_name(config):
    return check_dtype(config["dtype"]).name


def _flag(config, key):
    if not isinstance(config[key], bool):
        raise TypeError(f"{key} must be true or false, got {config[key]!r}")
    return config[key]


def _torch_dtype(dtype):
    import torch

    return torch.float32 if dtype == np.float32 else torch.float64


def torch_parameter_dtype(tensor):
    """float32 / float64 for a torch parameter, else a TypeError."""
    import torch

    if tensor.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"parameters must be float32 or float64, got {tensor.dtype}")
    return np.float32 if tensor.dtype == torch.float32 else np.float64


def torch_numpy(tensor):
    return tensor.detach().cpu().numpy()


@register
class Linear(WeightedLayer):
    """Dense layer ``out = activation(x @ weights + bias)``, bias and activation
    fused into one compiled kernel.

    Parameters
    ----------
    in_features, out_features : int
    activation : {None, "identity", "sigmoid", "relu", "tanh"}
    bias : bool
    dtype : float32 or float64
        The dtype of the parameters; inputs are cast to it.
    rng : None, int or numpy.random.Generator
        Initialisation: He uniform, U(+-sqrt(6 / in_features)), for relu;
        Glorot uniform, U(+-sqrt(6 / (in_features + out_features))), otherwise.
        The bias starts at U(+-1 / sqrt(in_features)), as in torch.

    Attributes
    ----------
    weights : (in_features, out_features)
    bias : (out_features,) or None
    grad_weights, grad_bias : same shapes, written by `backward`.
    input, output : the last forward's (batch, in) and (batch, out) arrays.
    """

    in_features = fixed("in_features")
    out_features = fixed("out_features")
    activation = fixed("activation")
    dtype = fixed("dtype")
    device = fixed("device", "'cpu' or 'cuda'; change it with `to`")

    def __init__(self, in_features, out_features, *, activation=None, bias=True,
                 dtype=np.float32, rng=None, device="cpu"):
        self._in_features = check_positive_int(in_features, "in_features")
        self._out_features = check_positive_int(out_features, "out_features")
        self._act = activation_code(activation)
        self._activation = kernels.ACTIVATION_NAMES[self._act]
        self._dtype = check_dtype(dtype)
        rng = check_rng(rng)
        fan_in, fan_out = self.in_features, self.out_features
        if self._act == kernels.RELU:
            w_bound = math.sqrt(6.0 / fan_in)
        else:
            w_bound = math.sqrt(6.0 / (fan_in + fan_out))
        self._init(_uniform(rng, w_bound, (fan_in, fan_out), self.dtype),
                   _uniform(rng, 1.0 / math.sqrt(fan_in), fan_out, self.dtype) if bias else None)
        if check_device(device) != "cpu":
            self.to(device)

    def _init(self, weights, bias):
        self._device = "cpu"
        self._backend = backend("cpu")
        self._bind(weights, np.zeros_like(weights), bias, None if bias is None else np.zeros_like(bias))
        self._packed_in = None  # the FusedNetwork whose flat buffers hold this layer's arrays
        self.input = None
        self.output = None

    def _bind(self, weights, grad_weights, bias, grad_bias):
        """Use these arrays from now on (views into a model's flat buffers, say)."""
        self._weights, self._grad_weights = weights, grad_weights
        self._bias, self._grad_bias = bias, grad_bias
        # Kernels take a (0,) array for "no bias" so one compiled version serves both.
        self._bias_or_empty = np.empty(0, self.dtype) if bias is None else bias
        self._grad_bias_or_empty = np.empty(0, self.dtype) if bias is None else grad_bias

    # -- parameters -----------------------------------------------------------
    def _bias_value(self, value):
        if tuple(np.shape(value)) == (1, self.out_features):  # the notebooks' keepdims=True row
            return (value if hasattr(value, "reshape") else np.asarray(value)).reshape(self.out_features)
        return value

    # -- compute --------------------------------------------------------------
    def to(self, device):
        """Move the parameters and gradients to "cuda" (numba device arrays) or
        back to "cpu". Optimizers built before the move keep the old arrays:
        build them after, as with torch."""
        device = check_device(device)
        if device == self.device:
            return self
        if self._packed_in is not None:
            raise RuntimeError("this layer's arrays belong to a Sequential: move the Sequential "
                               "(model.to(device)) instead")
        target = backend(device)
        move = target.take
        self._bind(move(self._weights), move(self._grad_weights),
                   None if self._bias is None else move(self._bias),
                   None if self._bias is None else move(self._grad_bias))
        if self._bias is None:  # the (0,) "no bias" array, on the new device
            self._bias_or_empty = self._grad_bias_or_empty = move(np.empty(0, self.dtype))
        self._device = device
        self._backend = target
        self.input = self.output = None
        return self

    def forward(self, x):
        """x: (batch, in_features) -> (batch, out_features), in the layer's dtype.

        On "cuda", x may be a numpy array (copied over) or a GPU array (used as
        is); the output stays on the GPU."""
        backend = self._backend
        x = backend.input(x, "x", self.dtype, (None, self.in_features))
        out = backend.empty((x.shape[0], self.out_features), self.dtype)
        backend.dense_forward(x, self._weights, self._bias_or_empty, self._act, out)
        self.input, self.output = x, out
        return out

    def backward(self, grad_out):
        """grad_out: (batch, out_features) -> gradient for x, (batch, in_features).

        Writes `grad_weights` and `grad_bias` for the last `forward`.
        """
        if self.output is None:
            raise RuntimeError("backward called before forward: there is no input to differentiate at")
        backend = self._backend
        grad_out = backend.input(grad_out, "grad_out", self.dtype, self.output.shape)
        delta = backend.empty(self.output.shape, self.dtype)
        grad_x = backend.empty(self.input.shape, self.dtype)
        backend.dense_backward(self.input, self._weights, self.output, grad_out, self._act, True,
                               delta, self._grad_weights, self._grad_bias_or_empty, grad_x)
        return grad_x

    # -- checkpoints and torch ---------------------------------------------------
    torch_module = "Linear"
    fuses_activation = True

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "activation": self.activation, "bias": self._bias is not None, "dtype": self.dtype.name}

    @classmethod
    def parameter_shapes(cls, config):
        n_in = check_positive_int(config["in_features"], "in_features")
        n_out = check_positive_int(config["out_features"], "out_features")
        dtype = _dtype_name(config)
        shapes = {"weights": ((n_in, n_out), dtype)}
        if _flag(config, "bias"):
            shapes["bias"] = ((n_out,), dtype)
        return shapes

    def to_torch(self):
        import torch

        m = torch.nn.Linear(self.in_features, self.out_features, bias=self._bias is not None,
                            dtype=_torch_dtype(self.dtype))
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(np.ascontiguousarray(_cuda.to_numpy(self._weights).T)))
            if self._bias is not None:
                m.bias.copy_(torch.from_numpy(_cuda.to_numpy(self._bias).copy()))
        return [m] + activation_layer(self.activation).torch_modules()

    def to_onnx(self, graph, x):
        weights = graph.constant(_cuda.to_numpy(self._weights), "weights")  # (in, out): Gemm without transB
        if self._bias is None:
            out = graph.node("MatMul", [x, weights])
        else:
            out = graph.node("Gemm", [x, weights, graph.constant(_cuda.to_numpy(self._bias), "bias")])
        return graph.activation(self.activation, out)

    def onnx_input_shape(self):
        return ["batch", self.in_features]

    @classmethod
    def from_torch_module(cls, m, activation):
        layer = cls(m.in_features, m.out_features, activation=activation, bias=m.bias is not None,
                    dtype=torch_parameter_dtype(m.weight))
        layer.weights = torch_numpy(m.weight).T
        if m.bias is not None:
            layer.bias = torch_numpy(m.bias)
        return layer

    def __repr__(self):
        device = "" if self.device == "cpu" else f", device={self.device!r}"
        return (f"Linear({self.in_features}, {self.out_features}, activation={self.activation!r}, "
                f"bias={self._bias is not None}, dtype={self.dtype.name}{device})")


@register(saved_as="Linear")  # a Linear with the notebook's initialisation: saved as one
class LinearLayer(Linear):
    """The seed-001 notebook's layer: ``LinearLayer((in, out), activation="relu")``.

    As there, it is linear only: `activation` chooses the initialisation
    (gain sqrt(2) for relu, 1 otherwise, U(+-sqrt(3) gain / sqrt(in))) and a
    separate `ReLU()` / `Sigmoid()` layer applies the non-linearity.
    """

    shape = fixed("shape")

    def __init__(self, shape, activation="relu", *, dtype=np.float32, rng=None):
        if not isinstance(shape, (tuple, list)) or len(shape) != 2:
            raise ValueError(f"shape must be (in_features, out_features), got {shape!r}")
        fan_in = check_positive_int(shape[0], "shape[0]")
        fan_out = check_positive_int(shape[1], "shape[1]")
        check_choice(activation, "activation", tuple(ACTIVATIONS))
        self._shape = (fan_in, fan_out)
        self._in_features, self._out_features = fan_in, fan_out
        self._act = kernels.IDENTITY
        self._activation = "identity"
        self._dtype = check_dtype(dtype)
        rng = check_rng(rng)
        gain = math.sqrt(2.0) if activation == "relu" else 1.0
        w_bound = math.sqrt(3.0) * gain / math.sqrt(fan_in)
        self._init(_uniform(rng, w_bound, self.shape, self.dtype),
                   _uniform(rng, 1.0 / math.sqrt(fan_in), fan_out, self.dtype))


class Activation(Layer):
    """Element-wise activation layer on arrays of any shape.

    float32 input stays float32; anything else is computed in float64.
    """

    _code = kernels.IDENTITY
    name = "identity"

    def __init__(self):
        self.input = None
        self.output = None

    @classmethod
    def torch_modules(cls):
        """The torch module for this activation ([] for the identity)."""
        if cls is Activation:
            return []
        import torch

        return [getattr(torch.nn, cls.__name__)()]

    def to_torch(self):
        return self.torch_modules()

    def to_onnx(self, graph, x):
        return graph.activation(self.name, x)

    @classmethod
    def from_torch_module(cls, m, activation):
        return cls()

    def forward(self, x):
        backend = backend_of(x)  # the device is the data's
        x = backend.input(x, "x", backend.float_dtype(x, "x"))
        out = backend.empty(x.shape, x.dtype)
        backend.activation_forward(backend.flat(x), self._code, backend.flat(out))
        self.input, self.output, self._backend = x, out, backend
        return out

    def backward(self, grad_out):
        if self.output is None:
            raise RuntimeError("backward called before forward: there is no input to differentiate at")
        backend = self._backend
        grad_out = backend.input(grad_out, "grad_out", self.output.dtype, self.output.shape)
        grad_x = backend.empty(self.output.shape, self.output.dtype)
        backend.activation_backward(backend.flat(self.output), backend.flat(grad_out), self._code,
                                    backend.flat(grad_x))
        return grad_x

    def __repr__(self):
        return f"{type(self).__name__}()"


@register
class ReLU(Activation):
    _code = kernels.RELU
    name = "relu"
    torch_module = "ReLU"


@register
class Sigmoid(Activation):
    _code = kernels.SIGMOID
    name = "sigmoid"
    torch_module = "Sigmoid"


@register
class Tanh(Activation):
    _code = kernels.TANH
    name = "tanh"
    torch_module = "Tanh"


def activation_layer(name):
    """The activation layer class for an activation name ("identity": Activation itself)."""
    return {cls.name: cls for cls in (Activation, ReLU, Sigmoid, Tanh)}[name]


def _rows(array):
    """A contiguous array as (rows, features): batch-first, every further axis a feature."""
    return array.reshape(array.shape[0] if array.ndim else 1, -1)


@register
class Dropout(Layer):
    """Inverted dropout: in training (`forward_pass(x)`, `train_step`, `fit`)
    each element is zeroed with probability p and the rest scaled by
    1 / (1 - p); `forward` (predict, evaluate) is the identity.

    The mask is a hash of the layer's `seed`, its count of training forwards
    and the element's index (kernels/dropout.py), so the same seed gives the
    same masks on the fused path and layer by layer; p is rounded to a
    multiple of 2**-16 for the keep rate (kept values are scaled by 1 / (1 - p)
    as torch does). Inside a model of Linear layers, after a Linear,
    it runs in the fused step.
    """

    p = fixed("p")
    seed = fixed("seed")

    def __init__(self, p=0.5, *, seed=None):
        self._p = check_finite_float(p, "p", minimum=0.0, maximum=0.999)
        if seed is None:
            seed = int(np.random.default_rng().integers(2 ** 62))
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 63:
            raise TypeError(f"seed must be None or an int in [0, 2**63), got {seed!r}")
        self._seed = int(seed)
        self._threshold = int(round(self._p * dropout.THRESHOLD_SCALE))
        # training forwards so far, as a 1-element array: a model's fused
        # step counts in the same array (a view of its flat counters)
        self._forwards = np.zeros(1, np.int64)
        self._packed_in = None
        self._counter = None  # the count the last training forward used, for backward

    def forward(self, x):
        """Evaluation: x unchanged."""
        self._counter = None
        return x

    def forward_pass(self, x, training=True):
        if not training or self._threshold == 0:
            return self.forward(x)
        dtype = float_dtype_of(x, "x")
        x = as_float_array(x, "x", dtype)
        out = np.empty_like(x)
        counter = int(self._forwards[0])
        self._forwards[0] = counter + 1
        dropout.dropout_forward(_rows(x), self._seed, counter, self._threshold, _rows(out))
        self._counter, self._shape = counter, x.shape
        return out

    def backward(self, grad_out):
        if self._counter is None:  # after an evaluation forward: the identity
            return grad_out
        grad_out = as_float_array(grad_out, "grad_out", float_dtype_of(grad_out, "grad_out"), self._shape)
        grad_x = np.empty_like(grad_out)
        dropout.dropout_backward(_rows(grad_out), self._seed, self._counter, self._threshold, _rows(grad_x))
        return grad_x

    def config(self):
        return {"p": self._p, "seed": self._seed, "forwards": int(self._forwards[0])}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        forwards = config.pop("forwards", 0)
        if isinstance(forwards, bool) or not isinstance(forwards, int) or forwards < 0:
            raise ValueError(f"forwards must be an int >= 0, got {forwards!r}")
        layer = cls(**config)
        layer._forwards[0] = forwards
        return layer

    @classmethod
    def parameter_shapes(cls, config):
        return {}

    torch_module = "Dropout"

    def to_torch(self):
        import torch

        return [torch.nn.Dropout(self._p)]

    @classmethod
    def from_torch_module(cls, m, activation):
        return cls(m.p)

    def to_onnx(self, graph, x):
        return x  # inference: the identity

    def __repr__(self):
        return f"Dropout(p={self._p}, seed={self._seed})"
