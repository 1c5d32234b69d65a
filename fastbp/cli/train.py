"""`python -m fastbp train`: train a classifier on a CSV file in the seed-004
layout (features..., label) and write what the run produced to a folder:
    history.csv   per-epoch loss, accuracy, test loss, test accuracy, seconds
    model.npz     the trained model (fastbp.load reads it)
    history.png   the loss and accuracy curves
    regions.png   the decision regions over the data (2-feature data only)
"""
import csv
import os

import numpy as np

from .. import datasets
from ..losses import CrossEntropyLoss, MSELoss
from ..optim import SGD, Adam
from .timing import build


# Labels become one output each (and one-hot columns): a stray label such as
# 1e12 must be refused before it asks for terabytes.
MAX_CLASSES = 100_000
OUTPUTS = ("history.csv", "model.npz", "history.png", "regions.png")


def check_output_folder(out_dir):
    """Refuse an output folder that could not be written after training: a
    path that is a file, one that cannot be created, one that is not
    writable, or one whose output names are taken by something else."""
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir} exists and is not a folder")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {out_dir}: cannot create the folder ({exc.strerror})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out_dir}: the folder is not writable")
    for name in OUTPUTS:
        target = os.path.join(out_dir, name)
        if os.path.isdir(target):
            raise ValueError(f"--out {out_dir}: {name} exists there and is a folder")


def build_classifier(n_features, hidden, n_classes, *, activation="sigmoid", loss="mse", dtype=np.float32,
                     rng=None):
    """A Sequential of Linear layers: `hidden` widths with `activation`, then
    n_classes outputs (sigmoid for "mse" on one-hot targets, as the seed-004
    notebook does; raw logits for "cross_entropy")."""
    widths = [n_features, *hidden, n_classes]
    acts = [activation] * len(hidden) + ["sigmoid" if loss == "mse" else "identity"]
    return build(widths, acts, seed=rng, dtype=dtype)


def train_from_csv(csv_path, out_dir, *, test_csv=None, test_fraction=0.3, hidden=(5,),
                   activation="sigmoid", loss="mse", optimizer="sgd", lr=0.1, momentum=0.0, epochs=400,
                   batch_size=8, seed=0, dtype=np.float32, progress=True, plots=True, log=print,
                   distributed=False):
    """Train, write the outputs listed above to out_dir, return (model, history).

    Everything that could stop the run after training (the output folder,
    the data, the options) is checked first, so no finished training is lost.
    distributed=True (under mpiexec): data-parallel over every rank
    (fastbp.distributed), batch_size per rank; rank 0 logs and writes."""
    trainer_for, rank = None, 0
    if distributed:
        from ..distributed import DataParallel, _mpi

        rank = _mpi().COMM_WORLD.Get_rank()
        trainer_for = DataParallel
        if rank != 0:
            log, progress, plots = (lambda *args: None), False, False
    if rank == 0:
        check_output_folder(out_dir)
    x, labels = datasets.load_csv(csv_path)
    if test_csv is not None:
        x_test, labels_test = datasets.load_csv(test_csv)
        if x_test.shape[1] != x.shape[1]:
            raise ValueError(f"{test_csv} has {x_test.shape[1]} features, {csv_path} has {x.shape[1]}")
        train, test = (x, labels), (x_test, labels_test)
    else:
        train, test = datasets.train_test_split(x, labels, test_fraction, rng=seed)
    n_classes = int(max(train[1].max(), test[1].max())) + 1
    if n_classes > MAX_CLASSES:
        raise ValueError(f"the largest class label is {n_classes - 1}: a classifier would need "
                         f"{n_classes} outputs (at most {MAX_CLASSES}); labels must be 0, 1, 2, ...")
    if len(np.unique(np.concatenate([train[1], test[1]]))) < 2:
        raise ValueError(f"{csv_path}: every sample has the label {int(train[1][0])}; a classifier needs "
                         f"at least two classes")
    if loss == "mse":
        loss_fn = MSELoss(reduction="half_sum")
        targets = [datasets.one_hot(part[1], n_classes, dtype) for part in (train, test)]
    elif loss == "cross_entropy":
        loss_fn = CrossEntropyLoss()
        targets = [train[1], test[1]]
    else:
        raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {loss!r}")
    model = build_classifier(x.shape[1], hidden, n_classes, activation=activation, loss=loss, dtype=dtype,
                             rng=seed)
    if optimizer == "sgd":
        opt = SGD(model.parameters(), lr=lr, momentum=momentum)
    elif optimizer == "adam":
        opt = Adam(model.parameters(), lr=lr)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    log(f"training {' -> '.join(str(w) for w in [x.shape[1], *hidden, n_classes])} ({activation}, "
        f"{loss}, {optimizer} lr {lr}) on {len(train[0])} samples, testing on {len(test[0])}, "
        f"{epochs} epochs of batch {batch_size}")
    fit_args = dict(loss=loss_fn, epochs=epochs, batch_size=batch_size,
                    validation_data=(test[0].astype(dtype), targets[1]), progress=progress, rng=seed)
    if trainer_for is not None:
        trainer = trainer_for(model, opt)
        log(f"data-parallel over {trainer.size} ranks, batch {batch_size} per rank")
        history = trainer.fit(train[0].astype(dtype), targets[0], **fit_args)
        if rank != 0:
            return model, history
    else:
        history = model.fit(train[0].astype(dtype), targets[0], optimizer=opt, **fit_args)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "history.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "loss", "accuracy", "test_loss", "test_accuracy", "seconds"])
        for epoch in range(len(history["loss"])):
            writer.writerow([epoch] + [history[k][epoch] for k in
                                       ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")])
    model.save(os.path.join(out_dir, "model.npz"))
    written = ["history.csv", "model.npz"]
    if plots:
        from ..plots import plot_decision_regions, plot_history

        plot_history(history, os.path.join(out_dir, "history.png"))
        written.append("history.png")
        if x.shape[1] == 2:
            plot_decision_regions(model, np.concatenate([train[0], test[0]]),
                                  np.concatenate([train[1], test[1]]), os.path.join(out_dir, "regions.png"))
            written.append("regions.png")
    log(f"final loss {history['loss'][-1]:.4f}, train accuracy {history['accuracy'][-1]:.4f}, "
        f"test accuracy {history['val_accuracy'][-1]:.4f}, {sum(history['seconds']):.2f} s training")
    log(f"wrote {', '.join(written)} to {out_dir}")
    return model, history
