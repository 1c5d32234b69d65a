"""Layers to and from PyTorch. torch is imported only when these are called.

fastbp keeps dense weights as (in_features, out_features), the seed notebooks'
`x.dot(W)`; torch's nn.Linear keeps (out_features, in_features). Conv2D uses
torch's layout already. Each layer type converts itself (`Layer.to_torch`,
`from_torch_module` for the torch class its `torch_module` names); this module
walks the lists and fuses an activation into the layer before it.
"""
from . import conv  # noqa: F401  (registers Conv2D, Scale, Flatten)
from .layers import LAYER_TYPES, Activation


def _fastbp_type(module):
    """The fastbp layer class converting `module`, "identity" for nn.Identity, or None."""
    import torch.nn as nn

    if type(module) is nn.Identity:
        return "identity"
    for cls in LAYER_TYPES.values():
        if cls.torch_module is None:
            continue
        torch_cls = getattr(nn, cls.torch_module)
        if type(module) is torch_cls:
            return cls
        if isinstance(module, torch_cls):
            # a subclass may override forward: converting its weights alone
            # would compute something else
            raise TypeError(f"a {type(module).__name__}, a subclass of nn.{cls.torch_module} whose forward "
                            f"fastbp cannot see; from_torch converts nn.{cls.torch_module} itself")
    return None


def layers_from_torch(module):
    """fastbp layers computing what `module` computes (see fastbp.from_torch)."""
    import torch.nn as nn

    if isinstance(module, nn.Sequential) and type(module) is not nn.Sequential:
        raise TypeError(f"module is a {type(module).__name__}, a subclass of nn.Sequential that may "
                        f"compute something else in its own forward; from_torch converts nn.Sequential "
                        f"itself")
    modules = list(module) if type(module) is nn.Sequential else [module]
    kinds = []
    for i, m in enumerate(modules):
        try:
            kind = _fastbp_type(m)
        except TypeError as exc:
            raise TypeError(f"module[{i}] is {exc}") from None
        if kind is None:
            known = ", ".join(cls.torch_module for cls in LAYER_TYPES.values() if cls.torch_module)
            raise TypeError(f"module[{i}] is a {type(m).__name__}; from_torch converts {known}, Identity "
                            f"and Sequential of them")
        for name, tensor in m.named_parameters(recurse=False):
            if tensor.is_meta:
                raise ValueError(f"module[{i}].{name} is on the 'meta' device and holds no values; "
                                 f"materialise it first (module.to_empty(device='cpu') and initialise)")
        kinds.append(kind)
    layers, i = [], 0
    while i < len(modules):
        kind = kinds[i]
        if kind == "identity":
            i += 1
            continue
        activation = None
        following = kinds[i + 1] if i + 1 < len(modules) else None
        if kind.fuses_activation and (following == "identity" or (
                isinstance(following, type) and issubclass(following, Activation))):
            activation = "identity" if following == "identity" else following.name
            i += 1
        try:
            layers.append(kind.from_torch_module(modules[i - (activation is not None)],
                                                 activation or "identity"))
        except ValueError as exc:
            raise ValueError(f"module[{i - (activation is not None)}]: {exc}") from None
        i += 1
    if not layers:
        raise ValueError("module computes nothing fastbp can hold (only Identity layers)")
    return layers


def to_torch(layers):
    """An nn.Sequential computing what `layers` compute, with copies of their parameters."""
    import torch.nn as nn

    modules = []
    for i, layer in enumerate(layers):
        try:
            modules += layer.to_torch()
        except TypeError as exc:
            raise TypeError(f"layers[{i}]: {exc}") from None
    return nn.Sequential(*modules)
