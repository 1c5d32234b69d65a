"""Checkpoints: `model.save(path)` and `fastbp.load(path)`.

Layout: an uncompressed numpy ``.npz`` (a zip of ``.npy`` files) holding
    fastbp.json       the architecture, as a 0-d unicode array of JSON:
                      {"format": "fastbp-checkpoint", "version": 1,
                       "layers": [{"type": "Linear", "in_features": 2, ...}, ...],
                       "sha256": hex digest of every array below, in order}
    layers.<i>.<name> each parameter of layer i ("weights", "bias"), in the
                      layer's dtype and shape
Loading uses numpy with allow_pickle=False, so a file can hold data only,
never code; anything that is not exactly this layout raises ValueError.
Writes go to a temporary file in the same folder, renamed over `path` only
once complete, so an interrupted save never leaves a half-written checkpoint.
"""
import hashlib
import json
import os
import secrets
import zipfile

import numpy as np

from .conv import Conv2D, Flatten, Scale
from .layers import Linear, ReLU, Sigmoid, Tanh
from .model import Sequential

FORMAT, VERSION = "fastbp-checkpoint", 1
ACTIVATION_LAYERS = {"ReLU": ReLU, "Sigmoid": Sigmoid, "Tanh": Tanh, "Flatten": Flatten}


def _spec(layer):
    """(JSON description, {name: array}) of one layer."""
    if isinstance(layer, Linear):
        spec = {"type": "Linear", "in_features": layer.in_features, "out_features": layer.out_features,
                "activation": layer.activation, "bias": layer.bias is not None, "dtype": layer.dtype.name}
    elif isinstance(layer, Conv2D):
        spec = {"type": "Conv2D", "in_channels": layer.in_channels, "out_channels": layer.out_channels,
                "kernel_size": list(layer.kernel_size), "stride": list(layer.stride),
                "padding": list(layer.padding), "activation": layer.activation,
                "bias": layer.bias is not None, "dtype": layer.dtype.name}
    elif isinstance(layer, Scale):
        spec = {"type": "Scale", "shape": list(layer.shape), "dtype": layer.dtype.name}
    elif type(layer).__name__ in ACTIVATION_LAYERS and type(layer) is ACTIVATION_LAYERS[type(layer).__name__]:
        spec = {"type": type(layer).__name__}
    else:
        raise TypeError(f"cannot save a {type(layer).__name__} layer; checkpoints hold "
                        f"Linear, Conv2D, Scale, {', '.join(ACTIVATION_LAYERS)}")
    return spec, {p.name: p.value for p in layer.parameters()}


def _build(spec):
    kind = spec.get("type")
    if kind == "Linear":
        return Linear(spec["in_features"], spec["out_features"], activation=spec["activation"],
                      bias=spec["bias"], dtype=spec["dtype"])
    if kind == "Conv2D":
        return Conv2D(spec["in_channels"], spec["out_channels"], tuple(spec["kernel_size"]),
                      stride=tuple(spec["stride"]), padding=tuple(spec["padding"]),
                      activation=spec["activation"], bias=spec["bias"], dtype=spec["dtype"])
    if kind == "Scale":
        return Scale(tuple(spec["shape"]), dtype=spec["dtype"])
    if kind in ACTIVATION_LAYERS:
        return ACTIVATION_LAYERS[kind]()
    raise ValueError(f"unknown layer type {kind!r}")


def _digest(arrays):
    sha = hashlib.sha256()
    for name, arr in arrays:
        sha.update(name.encode())
        sha.update(str(arr.dtype).encode())
        sha.update(repr(arr.shape).encode())
        sha.update(np.ascontiguousarray(arr).tobytes())
    return sha.hexdigest()


def save(model, path):
    """Write `model` (a Sequential, or a single layer) to `path` atomically."""
    layers = list(model.layers) if isinstance(model, Sequential) else [model]
    specs, arrays = [], []
    for i, layer in enumerate(layers):
        spec, params = _spec(layer)
        specs.append(spec)
        arrays += [(f"layers.{i}.{name}", value) for name, value in params.items()]
    meta = {"format": FORMAT, "version": VERSION, "layers": specs, "sha256": _digest(arrays)}
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    # opened with "x" (not mkstemp) so the file gets the usual umask permissions
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as f:
            np.savez(f, **{"fastbp.json": np.array(json.dumps(meta))}, **dict(arrays))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path):
    """The Sequential saved at `path` by `save`.

    Raises ValueError for anything that is not an intact fastbp checkpoint
    (truncated, another kind of file, edited architecture or values).
    """
    path = os.fspath(path)

    def bad(why):
        return ValueError(f"{path} is not a valid fastbp checkpoint: {why}")

    try:
        with np.load(path, allow_pickle=False) as archive:
            files = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise bad(f"{type(exc).__name__}: {exc}") from None
    if "fastbp.json" not in files:
        raise bad("no fastbp.json entry (a .npz written by something else?)")
    try:
        meta = json.loads(str(files.pop("fastbp.json")))
        if meta.get("format") != FORMAT:
            raise bad(f"format {meta.get('format')!r}")
        if meta.get("version") != VERSION:
            raise bad(f"version {meta.get('version')!r}, this fastbp reads version {VERSION}")
        layers = [_build(spec) for spec in meta["layers"]]
    except ValueError as exc:
        raise bad(str(exc)) from None
    except (TypeError, KeyError, AttributeError) as exc:
        raise bad(f"malformed architecture ({type(exc).__name__}: {exc})") from None
    expected = []
    for i, layer in enumerate(layers):
        for p in layer.parameters():
            name = f"layers.{i}.{p.name}"
            if name not in files:
                raise bad(f"missing array {name}")
            value = files.pop(name)
            if value.shape != p.value.shape or value.dtype != p.value.dtype:
                raise bad(f"{name} is {value.dtype}{value.shape}, the architecture needs "
                          f"{p.value.dtype}{p.value.shape}")
            expected.append((name, value))
    if files:
        raise bad(f"unexpected arrays {sorted(files)}")
    if _digest(expected) != meta.get("sha256"):
        raise bad("the arrays do not match the checksum written with them (edited or corrupted)")
    for i, layer in enumerate(layers):
        for p in layer.parameters():
            p.value[...] = dict(expected)[f"layers.{i}.{p.name}"]
    return Sequential(*layers)
