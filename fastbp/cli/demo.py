"""The README's main job: train the seed-004 network (2-5-3, sigmoid, no biases,
the notebook's initial weights) on three generated 2-D Gaussian clusters with
mini-batch SGD on 0.5 * sum of squared errors, then time the same training in
textbook numpy and in PyTorch eager."""
import numpy as np

import fastbp
from .baselines import NumpyMLP, torch_train_step
from .timing import median_seconds

SEED004_W1 = [[2.12444863, 0.25264613, 1.45417876, 0.56923979, 0.45822365],
              [-0.80933344, 0.86407349, 0.20170137, -1.87529904, -0.56850693]]
SEED004_W2 = [[-0.06510141, 0.80681666, -0.5778176], [0.57306064, -0.33667496, 0.29700734],
              [-0.37480416, 0.15510474, 0.70485719], [0.8452178, -0.65818079, 0.56810558],
              [0.51538125, -0.61564998, 0.92611427]]


def seed004_network(dtype=np.float32):
    net = fastbp.Sequential(fastbp.Linear(2, 5, activation="sigmoid", bias=False, dtype=dtype),
                            fastbp.Linear(5, 3, activation="sigmoid", bias=False, dtype=dtype))
    net[0].weights = SEED004_W1
    net[1].weights = SEED004_W2
    return net


def batches(n, batch_size):
    return [slice(lo, lo + batch_size) for lo in range(0, n, batch_size)]


def run(epochs=400, batch_size=8, lr=0.1, print_every=20, dtype=np.float32, seed=0, out=print):
    (x_train, y_train), (x_test, y_test) = fastbp.gaussian_blobs(seed=seed)
    x_train, x_test = x_train.astype(dtype), x_test.astype(dtype)
    targets = fastbp.one_hot(y_train, 3, dtype)
    out(f"fastbp {fastbp.__version__}: seed-004 network 2-5-3 (sigmoid, no biases), {dtype.__name__}, "
        f"{len(x_train)} train / {len(x_test)} test points, batch {batch_size}, lr {lr}, {epochs} epochs;\n"
        f"loss = 0.5 * squared error summed over the epoch, accuracy on the training points")

    net = seed004_network(dtype)
    loss = fastbp.MSELoss(reduction="half_sum")
    optimizer = fastbp.SGD(net.parameters(), lr=lr)
    net.train_step(x_train[:batch_size], targets[:batch_size], loss, optimizer)  # compile / load cache
    net = seed004_network(dtype)
    optimizer = fastbp.SGD(net.parameters(), lr=lr)

    def report(epoch, history):
        if epoch % print_every == 0 or epoch == epochs - 1:
            out(f"epoch {epoch:4d}  loss {history['loss'][-1]:.4f}  accuracy {history['accuracy'][-1]:.4f}")

    history = net.fit(x_train, targets, loss=loss, optimizer=optimizer, epochs=epochs,
                      batch_size=batch_size, shuffle=False, callback=report)
    fastbp_acc = float(np.mean(np.argmax(net.predict(x_test), axis=1) == y_test))
    out(f"test accuracy {fastbp_acc:.4f}")

    # The same training, same data order and initial weights, in numpy and torch.
    # Per-epoch time excludes the accuracy pass fit does after each epoch.
    steps = batches(len(x_train), batch_size)
    times = {"fastbp": median_seconds(lambda: [net.train_step(x_train[s], targets[s], loss, optimizer)
                                             for s in steps], epochs)}
    numpy_net = NumpyMLP(seed004_network(dtype))
    times["numpy"] = median_seconds(lambda: [numpy_net.train_step(x_train[s], targets[s], lr)
                                           for s in steps], epochs)
    accs = {"fastbp": fastbp_acc,
            "numpy": float(np.mean(np.argmax(numpy_net.forward(x_test), axis=1) == y_test))}
    try:
        import torch
    except ImportError:
        out("torch is not installed: comparing with numpy only")
    else:
        torch.set_num_threads(1)
        tnet = seed004_network(dtype).to_torch()
        topt = torch.optim.SGD(tnet.parameters(), lr=lr)
        tx, ty = torch.from_numpy(x_train), torch.from_numpy(targets)
        times["torch"] = median_seconds(lambda: [torch_train_step(tnet, topt, tx[s], ty[s]) for s in steps],
                                      epochs)
        with torch.no_grad():
            accs["torch"] = float(np.mean(np.argmax(tnet(torch.from_numpy(x_test)).numpy(), axis=1) == y_test))

    out(f"\ntime per epoch ({len(steps)} steps of forward + loss + backward + SGD), median of {epochs} epochs:")
    out(f"{'':8s} {'ms/epoch':>10s} {'us/step':>9s} {'vs fastbp':>10s} {'test acc':>9s}")
    for name, t in times.items():
        out(f"{name:8s} {t * 1e3:10.3f} {t / len(steps) * 1e6:9.2f} {t / times['fastbp']:9.1f}x {accs[name]:9.4f}")
    return history, times, accs
