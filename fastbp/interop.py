"""Models to and from PyTorch. torch is imported only when these are called.

fastbp keeps dense weights as (in_features, out_features), the seed notebooks'
`x.dot(W)`; torch's nn.Linear keeps (out_features, in_features). Conv2D uses
torch's layout already.
"""
import numpy as np

from .conv import Conv2D, Flatten, Scale
from .layers import Activation, Linear, ReLU, Sigmoid, Tanh
from .model import Sequential

_TORCH_ACTIVATIONS = {"ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Identity": "identity"}
_LAYER_FOR = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}


def _dtype(tensor):
    import torch

    if tensor.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"parameters must be float32 or float64, got {tensor.dtype}")
    return np.float32 if tensor.dtype == torch.float32 else np.float64


def _numpy(tensor):
    return tensor.detach().cpu().numpy()


def from_torch(module):
    """A fastbp Sequential computing what `module` computes.

    `module` is an nn.Linear, nn.Conv2d (zero padding, no dilation, no groups),
    nn.Flatten, nn.ReLU / Sigmoid / Tanh / Identity, or an nn.Sequential of
    them. An activation right after a Linear or Conv2d is fused into it.
    """
    import torch.nn as nn

    if isinstance(module, nn.Sequential) and type(module) is not nn.Sequential:
        raise TypeError(f"module is a {type(module).__name__}, a subclass of nn.Sequential that may "
                        f"compute something else in its own forward; from_torch converts nn.Sequential "
                        f"itself")
    modules = list(module) if type(module) is nn.Sequential else [module]
    layers = []
    i = 0
    while i < len(modules):
        m = modules[i]
        act = _activation_of(m)
        if act is not None:  # an activation no Linear / Conv2d before it took
            if act != "identity":
                layers.append(_LAYER_FOR[act]())
            i += 1
            continue
        # the activation right after a Linear or Conv2d is fused into it
        following = _activation_of(modules[i + 1]) if i + 1 < len(modules) else None
        fused = following or "identity"
        kind = next((k for k in (nn.Linear, nn.Conv2d, nn.Flatten) if isinstance(m, k)), None)
        if kind is not None and type(m) is not kind:
            # a subclass may override forward: converting its weights alone
            # would compute something else
            raise TypeError(f"module[{i}] is a {type(m).__name__}, a subclass of nn.{kind.__name__} whose "
                            f"forward fastbp cannot see; from_torch converts nn.{kind.__name__} itself")
        for name, tensor in m.named_parameters(recurse=False):
            if tensor.is_meta:
                raise ValueError(f"module[{i}].{name} is on the 'meta' device and holds no values; "
                                 f"materialise it first (module.to_empty(device='cpu') and initialise)")
        if kind is nn.Linear:
            layer = Linear(m.in_features, m.out_features, activation=fused, bias=m.bias is not None,
                           dtype=_dtype(m.weight))
            layer.weights = _numpy(m.weight).T
        elif kind is nn.Conv2d:
            if (m.dilation != (1, 1) or m.groups != 1 or m.padding_mode != "zeros"
                    or isinstance(m.padding, str)):
                raise ValueError(f"module[{i}]: only Conv2d with numeric zero padding, dilation 1 and "
                                 f"groups 1 converts, got {m}")
            layer = Conv2D(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                           padding=m.padding, activation=fused, bias=m.bias is not None,
                           dtype=_dtype(m.weight))
            layer.weights = _numpy(m.weight)
        elif kind is nn.Flatten:
            if m.start_dim != 1 or m.end_dim != -1:
                raise ValueError(f"module[{i}]: only Flatten(start_dim=1, end_dim=-1) converts, got {m}")
            layer, following = Flatten(), None
        else:
            raise TypeError(f"module[{i}] is a {type(m).__name__}; from_torch converts Linear, Conv2d, "
                            f"Flatten, ReLU, Sigmoid, Tanh, Identity and Sequential of them")
        if getattr(m, "bias", None) is not None:
            layer.bias = _numpy(m.bias)
        layers.append(layer)
        i += 2 if following is not None else 1
    if not layers:
        raise ValueError("module computes nothing fastbp can hold (only Identity layers)")
    return Sequential(*layers)


def _activation_of(module):
    """"relu" / "sigmoid" / "tanh" / "identity" for those torch modules, else None."""
    import torch.nn as nn

    kind = type(module).__name__
    if kind in _TORCH_ACTIVATIONS and type(module) is getattr(nn, kind):
        return _TORCH_ACTIVATIONS[kind]
    return None


def to_torch(model):
    """An nn.Sequential computing what `model` (a fastbp Sequential or layer) computes,
    with copies of its parameters."""
    import torch
    import torch.nn as nn

    layers = list(model.layers) if isinstance(model, Sequential) else [model]
    modules = []
    acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    for i, layer in enumerate(layers):
        if isinstance(layer, Linear):
            m = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                          dtype=torch.float32 if layer.dtype == np.float32 else torch.float64)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.weights.T)))
        elif isinstance(layer, Conv2D):
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                          padding=layer.padding, bias=layer.bias is not None,
                          dtype=torch.float32 if layer.dtype == np.float32 else torch.float64)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(layer.weights.copy()))
        elif isinstance(layer, Flatten):
            modules.append(nn.Flatten())
            continue
        elif isinstance(layer, Activation) and type(layer) in (ReLU, Sigmoid, Tanh):
            modules.append({ReLU: nn.ReLU, Sigmoid: nn.Sigmoid, Tanh: nn.Tanh}[type(layer)]())
            continue
        elif isinstance(layer, Scale):
            raise TypeError(f"layers[{i}]: Scale has no torch module; multiply by a Parameter instead")
        else:
            raise TypeError(f"layers[{i}] is a {type(layer).__name__}, which to_torch does not convert")
        if layer.bias is not None:
            with torch.no_grad():
                m.bias.copy_(torch.from_numpy(layer.bias.copy()))
        modules.append(m)
        if layer.activation != "identity":
            modules.append(acts[layer.activation]())
    return nn.Sequential(*modules)
