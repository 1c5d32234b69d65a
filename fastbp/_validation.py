"""Checks at the public boundary. Everything behind them trusts its inputs."""
import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype, name="dtype"):
    """The float dtype asked for, as np.dtype; float32 or float64 only."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


def check_positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def check_finite_float(value, name, *, minimum=None, maximum=None, positive=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


def numeric_array(x, name):
    """`x` as a numpy array of bool, integer or real float values (no copy
    when it is one already); anything else raises a TypeError naming `name`."""
    if isinstance(x, np.ma.MaskedArray):
        # np.asarray would drop the mask and compute on the values under it
        raise TypeError(f"{name} is a masked array; fill or drop the masked entries first "
                        f"(x.filled(value) or x.compressed())")
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError, RuntimeError) as exc:
            # ragged lists, torch tensors that require grad or are bfloat16, ...
            raise TypeError(f"{name} must be a real numeric array, got a {type(x).__name__} that numpy "
                            f"cannot convert: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr


_numeric = numeric_array


def check_rng(rng, name="rng"):
    """np.random.default_rng(rng), with a TypeError naming `name` for anything
    it does not take."""
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be None, an int seed or a np.random.Generator, got "
                        f"{type(rng).__name__} {rng!r}") from exc


def _shape_text(shape):
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def as_float_array(x, name, dtype, shape=None):
    """`x` as a C-contiguous array of `dtype`, copied only when it is not one already.

    `shape` is a tuple whose None entries match any size. Integer and bool
    input is cast; complex, object and string input is refused.
    """
    # The layer API calls this several times a step: an array that is already
    # what is asked for skips _numeric and asarray, and the shape is checked
    # in a loop rather than any(generator): both are a visible share of a
    # seed-sized layer step.
    ready = type(x) is np.ndarray and x.dtype == dtype and x.flags.c_contiguous
    arr = x if ready else _numeric(x, name)
    if shape is not None:
        got = arr.shape
        if len(got) != len(shape):
            raise ValueError(f"{name} must have shape {_shape_text(shape)}, got {got}")
        for want, size in zip(shape, got):
            if want is not None and want != size:
                raise ValueError(f"{name} must have shape {_shape_text(shape)}, got {got}")
    if ready:
        return x
    # asarray, not ascontiguousarray, which turns 0-d arrays into 1-d ones
    return np.asarray(arr, dtype=dtype, order="C")


def float_dtype_of(x, name):
    """The float dtype an activation or loss computes `x` in: float64 and float32
    stay, anything narrower or integer becomes float64 as in numpy."""
    arr = _numeric(x, name)
    if arr.dtype == np.float32:
        return arr.dtype
    return np.dtype(np.float64)


def check_labels(target, batch, classes):
    """Integer class indices as a (batch,) int64 array, each in [0, classes)."""
    labels = np.asarray(target, dtype=np.int64, order="C")  # keeps a 0-d target 0-d: refused
    if labels.shape != (batch,):
        raise ValueError(f"target of class indices must have shape ({batch},), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"target class indices must lie in [0, {classes - 1}], got "
                         f"values in [{labels.min()}, {labels.max()}]")
    return labels


def check_training_data(x, y, labels, output_of, dtype=None, x_name="x", y_name="y", like_x=None,
                        sample_weight=None, class_weight=None, classification=False):
    """(x, y) checked for training, before anything is updated.

    x must be (n, in_features) with n >= 1, of any real numeric dtype; y has
    n rows: class indices in [0, classes) when `labels` (returned as int64),
    else one target per output. `output_of(rows)` is the model's output for
    x's first row, which checks that x fits the model and gives the output's
    shape; it must change no parameter. With `dtype`, x and float targets
    come back C-contiguous in that dtype, as the compiled kernels take them.
    `like_x`: the in_features of the training data that x must match.
    Returns (x, y, the per-row weights `check_row_weights` makes, or None).
    """
    x = numeric_array(x, x_name)
    y = numeric_array(y, y_name)
    if x.ndim != 2:
        raise ValueError(f"{x_name} must have shape (n, in_features), got {x.shape}")
    if like_x is not None and x.shape[1] != like_x:
        raise ValueError(f"{x_name} must have shape (n, {like_x}) like x, got {x.shape}")
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"{y_name} must have {x.shape[0]} rows like {x_name}, got shape {y.shape}")
    rows = x.shape[0]
    if rows == 0:
        raise ValueError(f"{x_name} has no samples (shape {x.shape}): there is nothing to fit")
    if dtype is not None:
        x = as_float_array(x, x_name, dtype)
    out_shape = output_of(x[:1]).shape
    if labels:
        try:
            y = check_labels(y, rows, out_shape[1] if len(out_shape) == 2 else 0)
        except ValueError as exc:
            raise ValueError(f"{y_name}: {exc}") from None
    else:
        want = (rows,) + tuple(out_shape[1:])
        if y.shape != want:
            raise ValueError(f"{y_name} must have shape {want} (one target per output), got {y.shape}")
        y = y if dtype is None else as_float_array(y, y_name, dtype)
    return x, y, check_row_weights(sample_weight, class_weight, y, rows, classification)


def check_batch(x, y, labels, dtype, in_features, out_features, weights=None):
    """One batch for the compiled whole-network step: x as a (batch,
    in_features) C-contiguous array of `dtype`, copied only when it is not
    one already; y as (batch,) int64 class indices in [0, out_features) when
    `labels`, else as (batch, out_features) targets of `dtype`; weights, when
    given, as `check_sample_weight` returns them. Returns (x, targets or
    None, class indices or None, weights or None)."""
    x = as_float_array(x, "x", dtype, (None, in_features))
    if weights is not None:
        weights = check_sample_weight(weights, x.shape[0])
    if labels:
        return x, None, check_labels(y, x.shape[0], out_features), weights
    return x, as_float_array(y, "target", dtype, (x.shape[0], out_features)), None, weights


def check_sample_weight(weight, rows, name="sample_weight"):
    """Per-row weights as a (rows,) float64 C-contiguous array, each finite and >= 0."""
    weight = numeric_array(weight, name)
    if weight.shape != (rows,):
        raise ValueError(f"{name} must have shape ({rows},), one weight per row, got {weight.shape}")
    weight = np.asarray(weight, dtype=np.float64, order="C")
    if weight.size and not (np.all(np.isfinite(weight)) and weight.min() >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got values in [{weight.min()}, {weight.max()}]")
    return weight


def check_row_weights(sample_weight, class_weight, y, rows, classification):
    """The per-row weights sample_weight and class_weight (for fit) make, or None;
    `classification`: whether the loss is a classification loss."""
    weights = None if sample_weight is None else check_sample_weight(sample_weight, rows)
    if class_weight is None:
        return weights
    if not classification:
        raise ValueError("class_weight needs a classification loss (CrossEntropyLoss, BCELoss, "
                         "BCEWithLogitsLoss)")
    if y.ndim == 1:
        classes = y.astype(np.int64) if y.dtype.kind in "iu" else None
    elif y.ndim == 2:
        classes = (y[:, 0] > 0.5).astype(np.int64) if y.shape[1] == 1 else np.argmax(y, axis=1)
    else:
        classes = None
    if classes is None:
        raise ValueError(f"class_weight needs class targets (indices, one-hot rows or one binary output), got "
                         f"y of dtype {y.dtype} and shape {y.shape}")
    present, counts = np.unique(classes, return_counts=True)
    if isinstance(class_weight, str) and class_weight == "balanced":
        per_class = dict(zip(present.tolist(), (rows / (len(present) * counts)).tolist()))
    elif isinstance(class_weight, dict):
        per_class = {}
        for c, w in class_weight.items():
            if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
                raise TypeError(f"class_weight keys must be class indices (ints), got {c!r}")
            per_class[int(c)] = check_finite_float(w, f"class_weight[{c}]", minimum=0.0)
    else:
        raise TypeError(f"class_weight must be a dict {{class: weight}} or 'balanced', got {class_weight!r}")
    lookup = np.ones(int(max(present.max(), max(per_class, default=0))) + 1)
    for c, w in per_class.items():
        if 0 <= c < lookup.size:
            lookup[c] = w
    per_row = lookup[classes]
    return per_row if weights is None else weights * per_row
