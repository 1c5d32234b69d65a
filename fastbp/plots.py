"""Training curves and 2-D decision regions, saved to PNG (matplotlib, the
`plots` extra). Figures are drawn off-screen: no GUI, no pyplot state."""
import numpy as np


def _figure(width=6.4, height=4.8):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'fastbp[plots]'") from None
    return Figure(figsize=(width, height), dpi=100)


def plot_history(history, path):
    """Loss (and accuracy, when recorded) per epoch from `Sequential.fit`'s history."""
    if not history.get("loss"):
        raise ValueError("history has no 'loss' entries to plot (an empty fit?)")
    has_accuracy = any(a is not None for a in history.get("accuracy", []))
    fig = _figure(10 if has_accuracy else 6.4, 4.8)
    axes = fig.subplots(1, 2 if has_accuracy else 1, squeeze=False)[0]
    epochs = np.arange(len(history["loss"]))
    axes[0].plot(epochs, history["loss"], label="train")
    if history.get("val_loss"):
        axes[0].plot(epochs, history["val_loss"], label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[0].legend()
    if has_accuracy:
        axes[1].plot(epochs, history["accuracy"], label="train")
        if history.get("val_accuracy"):
            axes[1].plot(epochs, history["val_accuracy"], label="validation")
        axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path)


def plot_decision_regions(model, x, labels, path, *, resolution=200, margin=1.0):
    """The class `model` predicts over the plane around 2-D samples `x`, with
    the samples on top coloured by their `labels`."""
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (n, 2) to draw decision regions, got {x.shape}")
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {labels.shape}")
    lo, hi = x.min(axis=0) - margin, x.max(axis=0) + margin
    grid_x, grid_y = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    scores = np.asarray(model.predict(np.column_stack([grid_x.ravel(), grid_y.ravel()])))
    if scores.ndim == 2 and scores.shape[1] > 1:
        regions = np.argmax(scores, axis=1)
    else:  # one output: a binary classifier's probability or logit
        regions = (scores.ravel() > (0.5 if scores.min() >= 0 and scores.max() <= 1 else 0.0)).astype(int)
    fig = _figure()
    ax = fig.subplots()
    n_classes = int(max(regions.max(), labels.max())) + 1
    ax.contourf(grid_x, grid_y, regions.reshape(grid_x.shape), levels=np.arange(n_classes + 1) - 0.5,
                cmap="Pastel1", vmin=0, vmax=max(n_classes - 1, 1))
    ax.scatter(x[:, 0], x[:, 1], c=labels, cmap="Set1", vmin=0, vmax=max(n_classes - 1, 1),
               edgecolors="k", linewidths=0.5, s=18)
    ax.set(xlabel="x[0]", ylabel="x[1]", title="decision regions")
    fig.tight_layout()
    fig.savefig(path)
