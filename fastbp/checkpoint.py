"""Checkpoints: `fastbp.save(model, path)` (or `model.save(path)`) and `fastbp.load(path)`.

This module reads and writes lists of layers; each layer type describes
itself (`Layer.config`, `from_config`, `parameter_shapes` in layers.py), so
nothing here knows one type from another.

Layout: an uncompressed numpy ``.npz`` (a zip of ``.npy`` files) holding
    fastbp.json       the architecture, as a 0-d unicode array of JSON:
                      {"format": "fastbp-checkpoint", "version": 3,
                       "layers": [{"type": "Linear", "in_features": 2, ...}, ...],
                       "training": null, or what resumes training:
                           {"epoch": epochs done,
                            "optimizer": null or {"type": "Adam", "config": {...},
                                "step_count": 12, "parameters": the index in
                                model.parameters() of each parameter it updates,
                                "state": which of its two state buffers are kept},
                            "schedule": null or {"type": "StepLR", "state": {...}}},
                       "sha256": hex digest of "layers" and "training" (as
                                 canonical JSON) and of every array below, in order}
    layers.<i>.<name> each parameter of layer i ("weights", "bias"), in the
                      layer's dtype and shape
    optimizer.<k>.<j> state buffer k of the optimizer's j-th parameter (SGD's
                      velocity; Adam's exp_avg and exp_avg_sq), flat, in the
                      parameter's dtype
Versions 1 (digest over the arrays only) and 2 (no training entry) still load.

Loading reads with allow_pickle=False, so a file can hold data only, never
code. Before anything is allocated, every array's size is checked against the
architecture and against the bytes the file really holds (no compressed
members, no header claiming more than is there), so a small file cannot ask
for gigabytes; anything that is not exactly this layout raises ValueError.

Writes go to a temporary file in the target's folder, renamed over it only
once complete, so an interrupted save never leaves a half-written checkpoint;
a symbolic link is followed (its target is replaced, the link kept).
"""
import contextlib
import hashlib
import json
import os
import secrets
import struct
import zipfile
import zlib

import numpy as np

from ._cuda import to_numpy

from . import conv  # noqa: F401  (registers Conv2D, Scale, Flatten)
from . import optim, schedules
from .layers import LAYER_TYPES, SAVED_AS

OPTIMIZER_TYPES = {cls.__name__: cls for cls in (optim.SGD, optim.Adam, optim.AdamW)}
SCHEDULE_TYPES = {cls.__name__: cls for cls in (schedules.StepLR, schedules.ExponentialLR,
                                                schedules.CosineAnnealingLR, schedules.ReduceLROnPlateau,
                                                schedules.InvScaling, schedules.Adaptive)}

FORMAT, VERSION = "fastbp-checkpoint", 3
READABLE_VERSIONS = (1, 2, 3)
MAX_JSON_BYTES = 16 << 20  # the architecture entry; a real one is a few hundred bytes a layer


def _spec(layer):
    """(JSON description, {name: array}) of one layer."""
    name = SAVED_AS.get(type(layer))
    if name is None:
        # a subclass may compute something else than the type it derives from
        raise TypeError(f"cannot save a {type(layer).__name__} layer; checkpoints hold "
                        f"{', '.join(LAYER_TYPES)} (register a new layer type with fastbp.layers.register)")
    return {"type": name, **layer.config()}, {p.name: p.value for p in layer.parameters()}


def _layer_type(spec):
    if not isinstance(spec, dict):
        raise ValueError(f"a layer must be a JSON object, got {spec!r}")
    kind = spec.get("type")
    if kind not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {kind!r}")
    return LAYER_TYPES[kind], {k: v for k, v in spec.items() if k != "type"}


def _digest(arrays, specs=None, training=None, with_training=False):
    """SHA-256 of the architecture (versions 2 and 3; None for version 1), the
    training entry (version 3: with_training) and the arrays."""
    sha = hashlib.sha256()
    if specs is not None:
        sha.update(json.dumps(specs, sort_keys=True, separators=(",", ":")).encode())
    if with_training:
        sha.update(json.dumps(training, sort_keys=True, separators=(",", ":")).encode())
    for name, arr in arrays:
        sha.update(name.encode())
        sha.update(str(arr.dtype).encode())
        sha.update(repr(arr.shape).encode())
        sha.update(np.ascontiguousarray(arr).tobytes())
    return sha.hexdigest()


def _training_spec(optimizer, schedule, epoch, layers):
    """(the training entry, its arrays) for save."""
    if optimizer is None and schedule is None and epoch is None:
        return None, []
    spec = {"epoch": epoch, "optimizer": None, "schedule": None}
    arrays = []
    if optimizer is not None:
        if OPTIMIZER_TYPES.get(type(optimizer).__name__) is not type(optimizer):
            raise TypeError(f"optimizer: checkpoints hold {', '.join(OPTIMIZER_TYPES)}, got "
                            f"{type(optimizer).__name__}")
        index = {(id(p.layer), p.name): i for i, p in enumerate(p for layer in layers for p in layer.parameters())}
        positions = [index.get((id(p.layer), p.name)) for p in optimizer.params]
        if None in positions:
            raise ValueError("optimizer: it updates parameters that are not this model's")
        kept = [any(state[k].size for state in optimizer._state) for k in range(2)]
        spec["optimizer"] = {"type": type(optimizer).__name__, "config": optimizer.config(),
                             "step_count": optimizer.step_count, "parameters": positions, "state": kept}
        for k in range(2):
            if kept[k]:
                arrays += [(f"optimizer.{k}.{j}", np.array(to_numpy(state[k])).reshape(-1))
                           for j, state in enumerate(optimizer._state)]
    if schedule is not None:
        if type(schedule).__name__ not in SCHEDULE_TYPES:
            raise TypeError(f"schedule: checkpoints hold {', '.join(SCHEDULE_TYPES)}, got {type(schedule).__name__}")
        spec["schedule"] = {"type": type(schedule).__name__, "state": schedule.state_dict()}
    return spec, arrays


def save(layers, path, lock=None, optimizer=None, schedule=None, epoch=None):
    """Write `layers` (and, to resume training, an optimizer's state, a
    schedule's and the epochs done) to `path` atomically, reading them under
    `lock` (a model's, so that a save while another thread trains holds one
    step's parameters)."""
    specs, arrays = [], []
    with lock if lock is not None else contextlib.nullcontext():
        for i, layer in enumerate(layers):
            spec, params = _spec(layer)
            specs.append(spec)
            arrays += [(f"layers.{i}.{name}", np.array(to_numpy(value))) for name, value in params.items()]
        training, training_arrays = _training_spec(optimizer, schedule, epoch, layers)
        arrays += training_arrays
    meta = {"format": FORMAT, "version": VERSION, "layers": specs, "training": training,
            "sha256": _digest(arrays, specs, training, with_training=True)}
    # through a symbolic link: replace its target, keep the link
    path = os.path.realpath(os.fspath(path))
    folder = os.path.dirname(path)
    # a short name of its own, so any name that is legal for `path` works;
    # opened with "x" (not mkstemp) so the file gets the usual umask permissions
    tmp = os.path.join(folder, f".fastbp-{secrets.token_hex(8)}.tmp")
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


# What a damaged or foreign file can make zipfile and numpy's .npy reader raise.
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError,
                KeyError, TypeError, struct.error, zlib.error, UnicodeDecodeError, OverflowError,
                RuntimeError)


def _npy_header(archive, info):
    """(shape, dtype, bytes of data) from a member's .npy header, reading nothing else."""
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version}")
        header_bytes = f.tell()
    if dtype.hasobject:
        raise ValueError(f"{info.filename} holds Python objects")
    return shape, dtype, info.file_size - header_bytes


def _read_npy(archive, info):
    with archive.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def load(path):
    """The layers saved at `path` by `save`, as a list."""
    return load_training(path)[0]


def load_training(path):
    """(the layers saved at `path`, its training entry with the arrays it
    names under "arrays", or None when it has none).

    Raises ValueError for anything that is not an intact fastbp checkpoint
    (truncated, another kind of file, edited architecture or values, sizes
    that do not match the file); OSError (FileNotFoundError, ...) when the
    file cannot be opened.
    """
    path = os.fspath(path)

    def bad(why):
        return ValueError(f"{path} is not a valid fastbp checkpoint: {why}")

    try:
        archive = zipfile.ZipFile(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError,) + _READ_ERRORS as exc:
        raise bad(f"not a zip archive ({type(exc).__name__}: {exc})") from None
    with archive:
        try:
            meta, specs, expected = _read_checked(archive, os.path.getsize(path), bad)
        except ValueError as exc:
            if str(exc).startswith(f"{path} is not"):
                raise
            raise bad(f"{type(exc).__name__}: {exc}") from None
        except (OSError,) + _READ_ERRORS as exc:
            raise bad(f"{type(exc).__name__}: {exc}") from None
    try:
        layers = [cls.from_config(config) for cls, config in map(_layer_type, specs)]
    except (ValueError, TypeError, KeyError) as exc:
        raise bad(f"malformed architecture ({type(exc).__name__}: {exc})") from None
    values = dict(expected)
    for i, layer in enumerate(layers):
        for p in layer.parameters():
            p.value[...] = values[f"layers.{i}.{p.name}"]
    training = meta.get("training")
    if training is not None:
        training = dict(training, arrays={name: arr for name, arr in expected if name.startswith("optimizer.")})
    return layers, training


def _read_checked(archive, file_bytes, bad):
    """(meta, layer specs, [(name, array)]) from an open archive, every size
    checked before it is read."""
    members = {}
    for info in archive.infolist():
        if info.compress_type != zipfile.ZIP_STORED:
            raise bad(f"{info.filename} is compressed; fastbp writes uncompressed members only")
        if info.file_size > file_bytes:
            raise bad(f"{info.filename} claims {info.file_size} bytes in a {file_bytes}-byte file")
        if not info.filename.endswith(".npy"):
            raise bad(f"unexpected member {info.filename!r}")
        members[info.filename[:-4]] = info
    if "fastbp.json" not in members:
        raise bad("no fastbp.json entry (a .npz written by something else?)")
    info = members.pop("fastbp.json")
    if info.file_size > MAX_JSON_BYTES:
        raise bad(f"its architecture entry takes {info.file_size} bytes")
    shape, dtype, data_bytes = _npy_header(archive, info)
    if dtype.kind != "U" or shape != () or data_bytes != dtype.itemsize:
        raise bad(f"fastbp.json is not one JSON string (a {dtype}{shape} array of {data_bytes} bytes)")
    text = _read_npy(archive, info)
    try:
        meta = json.loads(str(text))
    except ValueError as exc:
        raise bad(f"fastbp.json is not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad(f"format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    if meta.get("version") not in READABLE_VERSIONS:
        raise bad(f"version {meta.get('version')!r}, this fastbp reads versions "
                  f"{', '.join(map(str, READABLE_VERSIONS))}")
    specs = meta.get("layers")
    if not isinstance(specs, list) or not specs:
        raise bad("no layers")
    wanted = []
    for i, spec in enumerate(specs):
        try:
            cls, config = _layer_type(spec)
            shapes = cls.parameter_shapes(config)
        except (ValueError, TypeError, KeyError) as exc:
            raise bad(f"layers[{i}]: malformed architecture ({type(exc).__name__}: {exc})") from None
        wanted += [(f"layers.{i}.{name}", shape, np.dtype(dtype)) for name, (shape, dtype) in shapes.items()]
    wanted += _training_arrays(meta.get("training") if meta["version"] >= 3 else None, wanted, bad)
    for name, shape, dtype in wanted:
        if name not in members:
            raise bad(f"missing array {name}")
        got_shape, got_dtype, data_bytes = _npy_header(archive, members[name])
        if got_shape != shape or got_dtype != dtype:
            raise bad(f"{name} is {got_dtype}{got_shape}, the architecture needs {dtype}{shape}")
        if data_bytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise bad(f"{name} holds {data_bytes} bytes of data, its {dtype}{shape} needs "
                      f"{int(np.prod(shape, dtype=np.int64)) * dtype.itemsize}")
    unexpected = sorted(set(members) - {name for name, _, _ in wanted})
    if unexpected:
        raise bad(f"unexpected arrays {unexpected}")
    expected = [(name, _read_npy(archive, members[name])) for name, _, _ in wanted]
    digest = _digest(expected, specs if meta["version"] >= 2 else None, meta.get("training"),
                     with_training=meta["version"] >= 3)
    if digest != meta.get("sha256"):
        raise bad("the architecture or the arrays do not match the checksum written with them "
                  "(edited or corrupted)")
    return meta, specs, expected


def _training_arrays(training, parameters, bad):
    """[(name, shape, dtype)] of the optimizer's state arrays the training
    entry names, checked against the model's `parameters` (as `wanted`)."""
    if training is None:
        return []
    if not isinstance(training, dict) or set(training) != {"epoch", "optimizer", "schedule"}:
        raise bad("malformed training entry")
    opt = training["optimizer"]
    if opt is None:
        return []
    if not isinstance(opt, dict) or not isinstance(opt.get("parameters"), list) or not isinstance(
            opt.get("state"), list) or len(opt["state"]) != 2:
        raise bad("malformed optimizer entry")
    wanted = []
    for k, kept in enumerate(opt["state"]):
        if not kept:
            continue
        for j, position in enumerate(opt["parameters"]):
            if not isinstance(position, int) or not 0 <= position < len(parameters):
                raise bad(f"optimizer parameter {j} is {position!r}, the model has {len(parameters)}")
            _, shape, dtype = parameters[position]
            wanted.append((f"optimizer.{k}.{j}", (int(np.prod(shape, dtype=np.int64)),), dtype))
    return wanted


def build_optimizer(entry, arrays, parameters):
    """The optimizer a training entry describes, over the model's
    `parameters` (model.parameters()), with its state restored."""
    cls = OPTIMIZER_TYPES.get(entry.get("type"))
    if cls is None:
        raise ValueError(f"unknown optimizer type {entry.get('type')!r}")
    config = dict(entry["config"])
    if "betas" in config:
        config["betas"] = tuple(config["betas"])
    optimizer = cls([parameters[i] for i in entry["parameters"]], **config)
    optimizer.step_count = int(entry["step_count"])
    for k, kept in enumerate(entry["state"]):
        if kept and not all(state[k].size for state in optimizer._state):
            raise ValueError(f"the saved {cls.__name__} keeps state buffer {k}, which its settings do not use")
        if kept:
            for j, state in enumerate(optimizer._state):
                state[k][...] = arrays[f"optimizer.{k}.{j}"]
    return optimizer


def build_schedule(entry):
    """The schedule a training entry describes, in its saved state."""
    cls = SCHEDULE_TYPES.get(entry.get("type"))
    if cls is None:
        raise ValueError(f"unknown schedule type {entry.get('type')!r}")
    schedule = cls.__new__(cls)
    vars(schedule).update(entry["state"])
    return schedule
