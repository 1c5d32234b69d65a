"""Hostile use of the public API: hyper-parameters and attributes changed after
construction, re-entrant callbacks, shared layer instances, optimizers built
before their model, extreme logits, overflowing updates, tampered and
oversized checkpoints, interrupted fits, a failing command line and a bad
environment. Each test names the behaviour it pins.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import zipfile

import numpy as np
import pytest
import torch

import fastbp
from fastbp.cli import main as cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _net(dtype=np.float32, seed=0, widths=(2, 5, 3), last="identity"):
    rng = np.random.default_rng(seed)
    acts = ["sigmoid"] * (len(widths) - 2) + [last]
    return fastbp.Sequential(*[fastbp.Linear(a, b, activation=act, dtype=dtype, rng=rng)
                               for a, b, act in zip(widths, widths[1:], acts)])


@pytest.fixture(autouse=True)
def _python_sigint_handler():
    # a process started in the background by a non-interactive shell inherits
    # SIGINT ignored, and Python then installs no handler of its own; the
    # Ctrl-C tests need the one an interactive run has
    old = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def _data(n=16, seed=1, widths=(2, 5, 3)):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, widths[0])).astype(np.float32),
            rng.standard_normal((n, widths[-1])).astype(np.float32))


def _params(model):
    return [p.value.copy() for p in model.parameters()]


def _same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


# -- optimizer hyper-parameters set after construction --------------------------

@pytest.mark.parametrize("path", ["fused", "layers", "bare layers"])
def test_momentum_set_after_construction_equals_momentum_given_at_construction(path):
    x, y = _data()
    runs = []
    for late in (False, True):
        model = _net()
        if path == "bare layers":  # in no Sequential: SGD updates parameter by parameter
            layers = [fastbp.Linear(2, 5, activation="sigmoid", rng=0), fastbp.Linear(5, 3, rng=1)]
            params = [p for layer in layers for p in layer.parameters()]
        else:
            params = model.parameters()
        opt = fastbp.SGD(params, lr=0.1, momentum=0.0 if late else 0.9)
        if late:
            opt.momentum = 0.9  # a warm-up: this wrote past a zero-length velocity
        for _ in range(5):
            if path == "bare layers":
                loss = fastbp.MSELoss()
                out = layers[1].forward(layers[0].forward(x))
                loss(out, y)
                layers[0].backward(layers[1].backward(loss.backward()))
                opt.step()
            else:
                model.train_step(x, y, fastbp.MSELoss(), opt, fused=None if path == "fused" else False)
        runs.append([p.value.copy() for p in params])
    assert _same(*runs)


@pytest.mark.parametrize("name, value", [("lr", float("nan")), ("lr", float("inf")), ("lr", -1.0),
                                         ("momentum", float("nan")), ("momentum", -0.5),
                                         ("lr", "0.1")])
def test_sgd_refuses_bad_hyper_parameters_set_later(name, value):
    opt = fastbp.SGD(_net().parameters(), lr=0.1)
    with pytest.raises((ValueError, TypeError), match=name):
        setattr(opt, name, value)
    assert opt.lr == 0.1 and opt.momentum == 0.0


@pytest.mark.parametrize("name, value", [("betas", (1.0, 0.999)), ("betas", (0.9, 1.0)), ("betas", 0.9),
                                         ("lr", float("nan")), ("eps", 0.0), ("eps", float("inf"))])
def test_adam_refuses_bad_hyper_parameters_set_later(name, value):
    model = _net()
    opt = fastbp.Adam(model.parameters())
    with pytest.raises((ValueError, TypeError), match=name.rstrip("s") if name == "betas" else name):
        setattr(opt, name, value)
    x, y = _data()
    model.train_step(x, y, fastbp.MSELoss(), opt)
    assert all(np.all(np.isfinite(p)) for p in _params(model))


@pytest.mark.parametrize("fused", [True, False])
def test_loss_reduction_set_later_is_honoured_or_refused(fused):
    x, y = _data()
    loss = fastbp.MSELoss()
    loss.reduction = "sum"
    model = _net()
    opt = fastbp.SGD(model.parameters(), lr=0.0)
    reference = fastbp.MSELoss(reduction="sum")(_net().forward(x), y)
    assert model.train_step(x, y, loss, opt, fused=fused) == pytest.approx(reference, rel=1e-6)
    history = model.fit(x, y, loss=loss, optimizer=opt, epochs=1, fused=fused)
    assert history["loss"][0] == pytest.approx(reference, rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        loss.reduction = "max"
    assert loss.reduction == "sum"


@pytest.mark.parametrize("attribute, value", [("activation", "relu"), ("in_features", 3),
                                              ("out_features", 7), ("dtype", np.float64),
                                              ("device", "cuda")])
def test_layer_architecture_is_read_only(attribute, value):
    layer = fastbp.Linear(2, 5, activation="sigmoid")
    with pytest.raises(AttributeError, match=attribute):
        setattr(layer, attribute, value)
    assert layer.activation == "sigmoid" and layer.in_features == 2


def test_conv_and_scale_geometry_is_read_only():
    conv = fastbp.Conv2D(1, 2, 3)
    for attribute in ("stride", "padding", "kernel_size", "activation"):
        with pytest.raises(AttributeError, match=attribute):
            setattr(conv, attribute, 2)
    with pytest.raises(AttributeError, match="shape"):
        fastbp.Scale(3).shape = (4,)


def test_model_layers_cannot_be_replaced_or_appended():
    model = _net()
    with pytest.raises(AttributeError):
        model.layers = [fastbp.Linear(2, 3)]
    with pytest.raises(AttributeError):
        model.layers.append(fastbp.Linear(3, 3))
    with pytest.raises(TypeError):
        model.layers[0] = fastbp.Linear(2, 5)


# -- re-entrant callbacks --------------------------------------------------------

def test_a_fit_callback_may_call_the_model_it_is_called_from():
    model = _net()
    x, y = _data()
    opt = fastbp.SGD(model.parameters(), lr=0.1)
    seen = []

    def callback(epoch, history):
        seen.append((model.evaluate(x, y, fastbp.MSELoss())[0], model.predict(x).shape,
                     model.forward(x[:2]).shape, model.train_step(x, y, fastbp.MSELoss(), opt)))

    worker = threading.Thread(target=lambda: model.fit(x, y, loss=fastbp.MSELoss(), optimizer=opt,
                                                       epochs=3, callback=callback), daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "fit deadlocked on its own callback"
    assert len(seen) == 3 and all(np.isfinite(s[0]) for s in seen)


# -- shared layer instances ------------------------------------------------------

def test_one_layer_object_twice_in_a_model_is_refused():
    act = fastbp.ReLU()
    with pytest.raises(ValueError, match=r"layers\[3\] is the same ReLU object as layers\[1\]"):
        fastbp.Sequential(fastbp.Linear(2, 4), act, fastbp.Linear(4, 4), act, fastbp.Linear(4, 1))
    tied = fastbp.Linear(4, 4)
    with pytest.raises(ValueError, match="same Linear object"):
        fastbp.Sequential(fastbp.Linear(2, 4), tied, tied)


# -- optimizers built before their Sequential ------------------------------------

@pytest.mark.parametrize("make", [lambda p: fastbp.SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: fastbp.Adam(p, lr=0.01)])
def test_an_optimizer_built_before_the_model_trains_it_like_one_built_after(make):
    x, y = _data()
    runs = []
    for before in (True, False):
        rng = np.random.default_rng(0)
        layers = [fastbp.Linear(2, 5, activation="sigmoid", rng=rng), fastbp.Linear(5, 3, rng=rng)]
        if before:
            opt = make([p for layer in layers for p in layer.parameters()])
        model = fastbp.Sequential(*layers)
        if not before:
            opt = make(model.parameters())
        start = _params(model)
        for _ in range(10):
            model.train_step(x, y, fastbp.MSELoss(), opt)
        assert not _same(start, _params(model)), "the model did not train"
        runs.append(_params(model))
    assert _same(*runs)


def test_sgd_built_before_the_model_takes_the_fused_step_keeping_its_velocity():
    x, y = _data()
    layers = [fastbp.Linear(2, 5, rng=0), fastbp.Linear(5, 3, rng=1)]
    opt = fastbp.SGD([p for layer in layers for p in layer.parameters()], lr=0.1, momentum=0.9)
    model = fastbp.Sequential(*layers)
    model.train_step(x, y, fastbp.MSELoss(), opt)
    assert opt.flat_params is model.fused.params and opt.flat_velocity.size == opt.flat_params.size
    assert np.any(opt.flat_velocity != 0)


# -- softmax cross-entropy at extreme logits -------------------------------------

@pytest.mark.parametrize("dtype, big", [(np.float64, 1e12), (np.float64, 1e16), (np.float64, 1e300),
                                        (np.float32, 1e30), (np.float32, 3e38)])
@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy_gradient_with_tied_huge_logits(dtype, big, soft):
    logits = np.array([[big, big, 0.0], [-big, 0.0, -big], [big, 0.0, big]], dtype)
    labels = np.array([0, 1, 2])
    target = fastbp.one_hot(labels, 3, dtype) if soft else labels
    loss = fastbp.CrossEntropyLoss()
    loss(logits, target)
    grad = loss.backward()
    softmax = np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    expected = (softmax - fastbp.one_hot(labels, 3)) / 3
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=0)


def test_cross_entropy_gradient_is_exactly_zero_when_the_loss_is():
    # one class: softmax is exactly 1, the loss exactly 0, so must the gradient be
    for batch in (1, 3, 7):
        loss = fastbp.CrossEntropyLoss()
        assert loss(np.zeros((batch, 1), np.float32), np.zeros(batch, np.int64)) == 0.0
        assert np.all(loss.backward() == 0)
    # a confident right answer: the true class's gradient may not turn positive
    loss = fastbp.CrossEntropyLoss()
    loss(np.array([[60.0, 0.0]] * 3, np.float32), np.zeros(3, np.int64))
    grad = loss.backward()
    assert grad[0, 0] <= 0 and grad[0, 1] >= 0


def test_a_one_class_problem_gives_adam_no_step():
    model = fastbp.Sequential(fastbp.Linear(2, 1, rng=0))
    opt = fastbp.Adam(model.parameters(), lr=0.1)
    before = _params(model)
    x = np.random.default_rng(0).standard_normal((6, 2)).astype(np.float32)
    for _ in range(5):
        assert model.train_step(x, np.zeros(6, np.int64), fastbp.CrossEntropyLoss(), opt) == 0.0
    assert _same(before, _params(model))


# -- float32 Adam as torch computes it --------------------------------------------

def test_float32_adam_steps_are_torch_steps_to_float32_rounding():
    # 1 - beta2 rounded once, as torch does: computed in float32 it made every
    # step 6.9e-6 (58 ulp) too large
    rng = np.random.default_rng(0)
    value = rng.standard_normal(4096).astype(np.float32)
    grads = rng.standard_normal((5, 4096)).astype(np.float32)
    layer = fastbp.Scale(4096, init=value)
    opt = fastbp.Adam(layer.parameters(), lr=1e-3)
    param = torch.nn.Parameter(torch.from_numpy(value.copy()))
    torch_opt = torch.optim.Adam([param], lr=1e-3)
    for g in grads:
        layer.grad_weights[...] = g
        opt.step()
        param.grad = torch.from_numpy(g.copy())
        torch_opt.step()
    moved = layer.weights.astype(np.float64) - value
    torch_moved = param.detach().numpy().astype(np.float64) - value
    # That error scaled every step alike; the two rules' orders of operations
    # (p + (-lr m) / d here, p + (-lr) (m / d) in torch) round about 1% of the
    # values an ulp apart, either way, which leaves the steps' common scale
    # within ~1e-8 of torch's but their distance near 1e-6.
    scale = np.sum(moved * torch_moved) / np.sum(torch_moved ** 2)
    assert abs(scale - 1.0) < 1e-6, f"steps {scale - 1.0:.2g} larger than torch's"
    relative = np.linalg.norm(moved - torch_moved) / np.linalg.norm(torch_moved)
    assert relative < 3e-6, f"steps {relative:.2g} off torch's"


# -- updates that overflow while the loss stays finite ----------------------------

def _overflowing():
    """A float32 net whose loss is finite in float64 (~1e60) while its weight
    gradient (~1e40) overflows float32."""
    model = fastbp.Sequential(fastbp.Linear(1, 1, rng=0))
    model.layers[0].weights = [[1e20]]
    model.layers[0].bias = [0.0]
    return model, np.full((4, 1), 1e10, np.float32), np.zeros((4, 1), np.float32)


@pytest.mark.parametrize("make, fused", [(lambda p: fastbp.SGD(p, lr=1e-3), None),
                                         (lambda p: fastbp.SGD(p, lr=1e-3), False),
                                         (lambda p: fastbp.Adam(p, lr=1e-3), None)])
def test_an_overflowing_update_changes_nothing(make, fused):
    model, x, y = _overflowing()
    opt = make(model.parameters())
    before = _params(model)
    assert model.train_step(x, y, fastbp.MSELoss(), opt, fused=fused) == np.inf
    assert _same(before, _params(model))
    with pytest.raises(fastbp.NonFiniteLossError) as info:
        model.fit(x, y, loss=fastbp.MSELoss(), optimizer=opt, epochs=2, batch_size=2, fused=fused)
    assert info.value.epoch == 0 and info.value.batch == 0
    assert _same(before, _params(model))
    loss = fastbp.MSELoss()
    loss(model.forward(x), y)
    model.backward(loss.backward())
    with pytest.raises(fastbp.NonFiniteUpdateError):
        opt.step()
    assert _same(before, _params(model))


def test_an_overflowing_per_parameter_sgd_update_changes_nothing():
    model, x, y = _overflowing()
    layer = fastbp.Linear(1, 1, rng=0)  # in no model: updated parameter by parameter
    layer.weights, layer.bias = model.layers[0].weights, model.layers[0].bias
    opt = fastbp.SGD(layer.parameters(), lr=1e-3, momentum=0.9)
    layer.backward(2 * layer.forward(x) / 4)
    before = [p.value.copy() for p in layer.parameters()]
    with pytest.raises(fastbp.NonFiniteUpdateError, match="nothing was changed"):
        opt.step()
    assert _same(before, [p.value for p in layer.parameters()])
    assert not np.any(opt._state[0][0])  # the velocity


# -- checkpoints -----------------------------------------------------------------

def _rewrite(path, out, edit_meta=None, edit_arrays=None, compress=False):
    with np.load(path) as archive:
        files = {name: archive[name] for name in archive.files}
    meta = json.loads(str(files.pop("fastbp.json")))
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(files)
    (np.savez_compressed if compress else np.savez)(out, **{"fastbp.json": np.array(json.dumps(meta))}, **files)


def _conv_model():
    return fastbp.Sequential(fastbp.Conv2D(1, 2, 3, stride=1, padding=1, activation="relu", rng=0),
                             fastbp.ReLU(), fastbp.Flatten(), fastbp.Linear(2 * 4 * 4, 3, rng=1))


@pytest.mark.parametrize("edit", [
    lambda m: m["layers"][0].update(activation="tanh"),
    lambda m: m["layers"][0].update(stride=[2, 2]),
    lambda m: m["layers"][0].update(padding=[0, 0]),
    lambda m: m["layers"][1].update(type="Tanh"),
    lambda m: m["layers"][3].update(activation="sigmoid"),
])
def test_an_edited_architecture_is_refused(tmp_path, edit):
    _conv_model().save(tmp_path / "m.npz")
    _rewrite(tmp_path / "m.npz", tmp_path / "edited.npz", edit_meta=edit)
    with pytest.raises(ValueError, match="checksum"):
        fastbp.load(tmp_path / "edited.npz")


def test_a_version_1_checkpoint_still_loads(tmp_path):
    from fastbp import checkpoint

    model = _net()
    model.save(tmp_path / "m.npz")

    def to_v1(meta):
        with np.load(tmp_path / "m.npz") as archive:
            arrays = [(n, archive[n]) for n in archive.files if n != "fastbp.json"]
        meta.update(version=1, sha256=checkpoint._digest(arrays))
    _rewrite(tmp_path / "m.npz", tmp_path / "v1.npz", edit_meta=to_v1)
    x = _data()[0]
    np.testing.assert_array_equal(fastbp.load(tmp_path / "v1.npz").predict(x), model.predict(x))


def test_a_checkpoint_claiming_huge_layers_is_refused_before_allocating(tmp_path):
    _net().save(tmp_path / "m.npz")
    _rewrite(tmp_path / "m.npz", tmp_path / "huge.npz",
             edit_meta=lambda m: m["layers"][0].update(in_features=100000, out_features=100000))
    assert os.path.getsize(tmp_path / "huge.npz") < 4096
    with pytest.raises(ValueError, match="needs float32"):
        fastbp.load(tmp_path / "huge.npz")


def test_a_zip_bomb_is_refused_unread(tmp_path):
    _net().save(tmp_path / "m.npz")
    bomb = np.zeros(256 << 20, np.uint8)  # 256 MiB of zeros deflate to 261 kB
    _rewrite(tmp_path / "m.npz", tmp_path / "bomb.npz", edit_arrays=lambda a: a.update(padding=bomb),
             compress=True)
    with pytest.raises(ValueError, match="compressed"):
        fastbp.load(tmp_path / "bomb.npz")


def test_an_npy_header_claiming_terabytes_is_refused(tmp_path):
    model = _net()
    model.save(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as src, zipfile.ZipFile(tmp_path / "tb.npz", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "layers.0.weights.npy":
                header = data[:data.index(b"\n") + 1].decode("latin1")
                fake = header.replace("(2, 5)", "(1000000, 2000000)")
                fake = fake[:-1].ljust(len(header) - 1) + "\n"
                data = fake.encode("latin1") + data[len(header):]
            dst.writestr(info.filename, data)
    with pytest.raises(ValueError, match="not a valid fastbp checkpoint"):
        fastbp.load(tmp_path / "tb.npz")


def test_other_files_and_flipped_bytes_raise_value_error(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not a valid fastbp checkpoint"):
        fastbp.load(tmp_path / "a.npy")
    model = _net()
    model.save(tmp_path / "m.npz")
    good = (tmp_path / "m.npz").read_bytes()
    x = _data()[0]
    rng = np.random.default_rng(0)
    for position in list(range(0, 64)) + list(rng.integers(0, len(good), 150)) + list(range(len(good) - 64,
                                                                                             len(good))):
        damaged = bytearray(good)
        damaged[position] ^= 0xFF
        (tmp_path / "d.npz").write_bytes(bytes(damaged))
        try:
            loaded = fastbp.load(tmp_path / "d.npz")
        except ValueError as exc:
            assert "not a valid fastbp checkpoint" in str(exc)
            continue
        # a byte zipfile never reads (a comment, a spare header field) may change
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_save_takes_any_legal_file_name_and_follows_symbolic_links(tmp_path):
    model = _net()
    long_name = tmp_path / ("m" * 245 + ".npz")  # 249 characters
    model.save(long_name)
    fastbp.load(long_name)
    target = tmp_path / "target.npz"
    _net(seed=5).save(target)
    (tmp_path / "link.npz").symlink_to(target)
    model.save(tmp_path / "link.npz")
    assert (tmp_path / "link.npz").is_symlink()
    x = _data()[0]
    np.testing.assert_array_equal(fastbp.load(target).predict(x), model.predict(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["link.npz", "target.npz", long_name.name])


def test_saving_while_another_thread_trains_always_writes_a_loadable_checkpoint(tmp_path):
    model = _net(widths=(16, 64, 64, 8))
    x, y = _data(64, widths=(16, 64, 64, 8))
    opt = fastbp.SGD(model.parameters(), lr=1e-3)
    stop = threading.Event()

    def train():
        while not stop.is_set():
            model.train_step(x, y, fastbp.MSELoss(), opt)
    worker = threading.Thread(target=train)
    worker.start()
    try:
        for i in range(40):
            model.save(tmp_path / "m.npz")
            fastbp.load(tmp_path / "m.npz")
    finally:
        stop.set()
        worker.join()


# -- fit checks everything before its first update --------------------------------

@pytest.mark.parametrize("validation_data, error", [
    (lambda x, y: (x[:, :1], y), ValueError), (lambda x, y: (x, np.full(len(x), 7)), ValueError),
    (lambda x, y: (x,), TypeError), (lambda x, y: (x, y, y), TypeError), (lambda x, y: x, TypeError),
    (lambda x, y: (x, y[:3]), ValueError),
])
@pytest.mark.parametrize("make", [lambda p: fastbp.SGD(p, lr=0.1), lambda p: fastbp.Adam(p)])
def test_fit_refuses_bad_validation_data_before_training(validation_data, error, make):
    model = _net()
    x = _data()[0]
    labels = np.arange(16) % 3
    before = _params(model)
    with pytest.raises(error, match="validation_data"):
        model.fit(x, labels, loss=fastbp.CrossEntropyLoss(), optimizer=make(model.parameters()), epochs=2,
                  validation_data=validation_data(x, labels))
    assert _same(before, _params(model))


def test_fit_on_the_layer_path_checks_every_target_before_training():
    model = _net()
    x = _data()[0]
    labels = np.arange(16) % 3
    labels[-1] = 3  # out of range, in the last batch
    before = _params(model)
    with pytest.raises(ValueError, match=r"y: .*\[0, 2\]"):
        model.fit(x, labels, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.Adam(model.parameters()),
                  batch_size=4, shuffle=False)
    with pytest.raises(ValueError, match=r"y must have shape \(16, 3\)"):
        model.fit(x, np.zeros((16, 2)), loss=fastbp.MSELoss(), optimizer=fastbp.Adam(model.parameters()))
    assert _same(before, _params(model))


# -- Ctrl-C lands between steps ------------------------------------------------------

def _unfused_net():
    """_net()'s network with its sigmoid as a layer of its own: not fused, so
    its optimizer updates parameter by parameter."""
    rng = np.random.default_rng(0)
    return fastbp.Sequential(fastbp.Linear(2, 5, dtype=np.float32, rng=rng), fastbp.Sigmoid(),
                             fastbp.Linear(5, 3, dtype=np.float32, rng=rng))


def _interrupting_update(at, updates, real_update=fastbp.kernels.update):
    """The CPU backend's per-parameter update, sending SIGINT to this process
    after its `at`-th call."""
    def update(*args):
        real_update(*args)
        updates.append(1)
        if len(updates) == at:
            signal.raise_signal(signal.SIGINT)
    return staticmethod(update)


def test_ctrl_c_during_fit_stops_after_a_whole_step(monkeypatch):
    # The layer path updates parameter by parameter; SIGINT arrives after the
    # second of the four updates of the third step and must wait for its end
    assert threading.current_thread() is threading.main_thread()
    x, y = _data()
    updates = []
    model = _unfused_net()
    opt = fastbp.Adam(model.parameters(), lr=0.01)
    monkeypatch.setattr(fastbp._backend.CPU, "update", _interrupting_update(2 * 4 + 2, updates))
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, loss=fastbp.MSELoss(), optimizer=opt, epochs=3, batch_size=4, shuffle=False)
    monkeypatch.undo()
    reference = _unfused_net()
    ref_opt = fastbp.Adam(reference.parameters(), lr=0.01)
    for lo in range(0, 12, 4):  # three whole steps
        reference.train_step(x[lo:lo + 4], y[lo:lo + 4], fastbp.MSELoss(), ref_opt)
    assert opt.step_count == 3 and len(updates) == 12
    assert _same(_params(model), _params(reference))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- command line ----------------------------------------------------------------

def _csv(tmp_path, labels, name="data.csv"):
    rng = np.random.default_rng(0)
    path = tmp_path / name
    fastbp.save_csv(path, rng.standard_normal((len(labels), 2)), np.asarray(labels))
    return path


@pytest.mark.parametrize("case", ["out is a file", "out not writable", "one class", "label 1e12",
                                  "csv is a folder", "lr 1e30"])
def test_train_cli_fails_in_one_line_before_training(tmp_path, capsys, case):
    csv_path = _csv(tmp_path, np.arange(30) % 3)
    out = tmp_path / "run"
    args = ["--epochs", "3", "--no-plots", "--no-progress"]
    if case == "out is a file":
        out.write_text("precious")
    elif case == "out not writable":
        if os.geteuid() == 0:
            out = tmp_path / "file" / "run"  # root writes anywhere: a folder under a file cannot exist
            (tmp_path / "file").write_text("x")
        else:
            out.mkdir()
            out.chmod(0o500)
    elif case == "one class":
        csv_path = _csv(tmp_path, np.zeros(30, int))
    elif case == "label 1e12":
        labels = np.arange(30) % 3
        labels[5] = 10 ** 12
        csv_path = _csv(tmp_path, labels)
    elif case == "csv is a folder":
        csv_path = tmp_path
    elif case == "lr 1e30":
        args += ["--lr", "1e30", "--activation", "relu", "--loss", "cross_entropy", "--epochs", "20"]
    assert cli(["train", "--csv", str(csv_path), "--out", str(out)] + args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("fastbp train: error:") and "\n" not in err and "Traceback" not in err
    if case != "lr 1e30":
        assert "training" not in captured.out
    if case == "out is a file":
        assert out.read_text() == "precious"


def test_bench_cli_checks_its_arguments_before_benchmarking(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli(["bench", "--readme", str(tmp_path / "missing.md")])
    assert info.value.code == 2 and "missing.md" in capsys.readouterr().err
    for budget in ("inf", "nan", "0", "-1"):
        with pytest.raises(SystemExit) as info:
            cli(["bench", "--budget", budget])
        assert info.value.code == 2 and "--budget" in capsys.readouterr().err


# -- odd arrays into layers --------------------------------------------------------

@pytest.mark.parametrize("value", [np.ones((2, 3), np.complex64), np.array([["a", "b"]]),
                                   np.array([[object()]], dtype=object)])
def test_flatten_refuses_non_numeric_arrays(value):
    with pytest.raises(TypeError, match="x must be a real numeric array"):
        fastbp.Flatten().forward(value)


def test_flatten_scale_and_a_conv_net_take_empty_batches():
    flat = fastbp.Flatten()
    assert flat.forward(np.zeros((0, 2, 3))).shape == (0, 6)
    assert flat.backward(np.zeros((0, 6))).shape == (0, 2, 3)
    scale = fastbp.Scale((2, 3))
    assert scale.forward(np.zeros((0, 2, 3))).shape == (0, 2, 3)
    assert scale.backward(np.zeros((0, 2, 3))).shape == (0, 2, 3)
    model = fastbp.Sequential(fastbp.Conv2D(1, 2, 3, rng=0), fastbp.Flatten(), fastbp.Linear(2 * 2 * 2, 3))
    assert model.forward(np.zeros((0, 1, 4, 4))).shape == (0, 3)
    assert model.backward(np.zeros((0, 3))).shape == (0, 1, 4, 4)


def test_scale_refuses_a_float_shape_by_name():
    with pytest.raises(TypeError, match="shape must be an int or a tuple of ints, got float 3.5"):
        fastbp.Scale(3.5)


def test_save_csv_refuses_complex_features(tmp_path):
    with pytest.raises(TypeError, match="x must be a real numeric array"):
        fastbp.save_csv(tmp_path / "c.csv", np.ones((3, 2)) * (1 + 2j), np.zeros(3, int))
    assert not (tmp_path / "c.csv").exists()


@pytest.mark.parametrize("call, match", [
    (lambda: fastbp.Linear(2, 3).forward(np.ma.masked_array(np.ones((2, 2)), mask=[[1, 0], [0, 0]])),
     "x is a masked array"),
    (lambda: fastbp.Linear(2, 3, rng="x"), "rng must be"),
    (lambda: fastbp.Linear(2, 3).forward([[1.0, 2.0], [3.0]]), "x must be a real numeric array"),
    (lambda: fastbp.Linear(2, 3).forward(torch.ones(2, 2, requires_grad=True)), "x must be a real numeric"),
    (lambda: fastbp.Linear(2, 3).forward(torch.ones(2, 2, dtype=torch.bfloat16)), "x must be a real numeric"),
    (lambda: _net().evaluate(np.ones((2, 2)), np.ones((2, 3)), loss="mse"), "loss must be a fastbp loss"),
    (lambda: fastbp.MSELoss()(np.ma.masked_array(np.ones(3), mask=[1, 0, 0]), np.ones(3)),
     "pred is a masked array"),
])
def test_errors_name_the_argument(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()


# -- torch interop --------------------------------------------------------------------

def test_from_torch_refuses_subclasses_it_cannot_honour():
    class Doubled(torch.nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    class Branchy(torch.nn.Sequential):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="subclass of nn.Linear"):
        fastbp.from_torch(torch.nn.Sequential(Doubled(2, 3)))
    with pytest.raises(TypeError, match="subclass of nn.Sequential"):
        fastbp.from_torch(Branchy(torch.nn.Linear(2, 3)))


def test_from_torch_refuses_a_meta_device_module_by_name():
    with pytest.raises(ValueError, match=r"module\[0\]\.weight is on the 'meta' device"):
        fastbp.from_torch(torch.nn.Linear(2, 3, device="meta"))


# -- environment ------------------------------------------------------------------------

@pytest.mark.parametrize("env, match", [({"NUMBA_NUM_THREADS": "0"}, "NUMBA_NUM_THREADS"),
                                        ({"NUMBA_NUM_THREADS": "-2"}, "NUMBA_NUM_THREADS"),
                                        ({"NUMBA_NUM_THREADS": "two"}, "NUMBA_NUM_THREADS"),
                                        ({"NUMBA_DISABLE_JIT": "1"}, "NUMBA_DISABLE_JIT")])
def test_a_bad_numba_environment_is_named_at_import(env, match):
    result = subprocess.run([sys.executable, "-c", "import fastbp"], capture_output=True, text=True,
                            env={**os.environ, **env}, cwd=os.path.dirname(REPO), timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: fastbp:") and match in last


# -- fuzzing the classes above ------------------------------------------------------
# Fixed budgets: together these run in well under a minute.

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

STATEFUL = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))

_BAD_FLOATS = [float("nan"), float("inf"), -float("inf"), -1.0, "0.1", None, True, [0.1]]
_OPERATIONS = st.one_of(
    st.tuples(st.just("lr"), st.one_of(st.floats(0.0, 0.5), st.sampled_from(_BAD_FLOATS))),
    st.tuples(st.just("momentum"), st.one_of(st.sampled_from([0.0, 0.5, 0.9]), st.sampled_from(_BAD_FLOATS))),
    st.tuples(st.just("reduction"), st.sampled_from(["mean", "sum", "max", None, "Sum"])),
    st.tuples(st.just("step"), st.integers(1, 9)),
)


@STATEFUL
@given(operations=st.lists(_OPERATIONS, min_size=1, max_size=12), fused=st.booleans())
def test_fuzz_hyper_parameters_changed_between_steps_follow_torch(operations, fused):
    """Any sequence of lr / momentum / reduction changes and steps: invalid
    values are refused and change nothing, valid ones act as in torch."""
    model = _net(dtype=np.float64, widths=(3, 4, 2))
    reference = model.to_torch()
    x, y = _data(9, widths=(3, 4, 2))
    x, y = x.astype(np.float64), y.astype(np.float64)
    opt = fastbp.SGD(model.parameters(), lr=0.1)
    torch_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.0)
    loss = fastbp.MSELoss()
    for name, value in operations:
        if name == "step":
            model.train_step(x[:value], y[:value], loss, opt, fused=None if fused else False)
            torch_opt.zero_grad()
            torch.nn.MSELoss(reduction=loss.reduction)(reference(torch.from_numpy(x[:value])),
                                                       torch.from_numpy(y[:value])).backward()
            torch_opt.step()
            continue
        target = loss if name == "reduction" else opt
        valid = (value in ("mean", "sum") if name == "reduction"
                 else isinstance(value, float) and np.isfinite(value) and value >= 0)
        if not valid:
            before = getattr(target, name)
            with pytest.raises((ValueError, TypeError)):
                setattr(target, name, value)
            assert getattr(target, name) == before
            continue
        setattr(target, name, value)
        if name != "reduction":
            torch_opt.param_groups[0][name] = value
    got = fastbp.from_torch(reference)
    for mine, theirs in zip(model.parameters(), got.parameters()):
        np.testing.assert_allclose(mine.value, theirs.value, rtol=1e-10, atol=1e-12)


_HOSTILE_VALUES = [0, -1, 10 ** 6, 10 ** 12, 2.5, "relu", "x", None, True, [], [3], [1, 2, 3], {}, "float16"]


@STATEFUL
@given(layer=st.integers(0, 3), key=st.sampled_from(["type", "in_features", "out_features", "activation",
                                                      "bias", "dtype", "stride", "padding", "kernel_size",
                                                      "in_channels", "out_channels", "shape"]),
       value=st.sampled_from(_HOSTILE_VALUES))
def test_fuzz_tampered_architecture_is_always_refused(tmp_path_factory, layer, key, value):
    folder = tmp_path_factory.mktemp("tamper")
    model = _conv_model()
    model.save(folder / "m.npz")
    spec_before = None

    def edit(meta):
        nonlocal spec_before
        spec_before = dict(meta["layers"][layer])
        meta["layers"][layer][key] = value
    _rewrite(folder / "m.npz", folder / "t.npz", edit_meta=edit)
    if spec_before.get(key, object()) == value and type(spec_before.get(key)) is type(value):
        return  # not an edit
    with pytest.raises(ValueError, match="not a valid fastbp checkpoint"):
        fastbp.load(folder / "t.npz")


@STATEFUL
@given(picks=st.lists(st.integers(0, 4), min_size=1, max_size=7))
def test_fuzz_shared_layer_instances_are_refused_exactly_when_repeated(picks):
    pool = [fastbp.ReLU(), fastbp.Tanh(), fastbp.Sigmoid(), fastbp.Linear(3, 3, rng=0), fastbp.Scale(3)]
    layers = [pool[i] for i in picks]
    if len(set(picks)) < len(picks):
        with pytest.raises(ValueError, match="same .* object"):
            fastbp.Sequential(*layers)
    else:
        model = fastbp.Sequential(*layers)
        x = np.random.default_rng(0).standard_normal((4, 3))
        torch_model = model.to_torch() if 4 not in picks else None
        out = model.forward(x)
        if torch_model is not None:
            np.testing.assert_allclose(out, torch_model(torch.from_numpy(x.astype(np.float32))).detach().numpy(),
                                       rtol=1e-5, atol=1e-6)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(at=st.integers(1, 16), batch_size=st.sampled_from([4, 5, 16]))
def test_fuzz_ctrl_c_anywhere_in_an_adam_fit_stops_at_a_step_boundary(at, batch_size):
    x, y = _data()
    model = _unfused_net()
    opt = fastbp.Adam(model.parameters(), lr=0.01)
    real_update = fastbp._backend.CPU.update
    fastbp._backend.CPU.update = _interrupting_update(at, [])
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(x, y, loss=fastbp.MSELoss(), optimizer=opt, epochs=20, batch_size=batch_size,
                      shuffle=False)
    finally:
        fastbp._backend.CPU.update = staticmethod(real_update)
    steps = -(-at // 4)  # the step the signal arrived in is finished
    assert opt.step_count == steps
    reference = _unfused_net()
    ref_opt = fastbp.Adam(reference.parameters(), lr=0.01)
    starts = [lo for _ in range(20) for lo in range(0, 16, batch_size)]
    for lo in starts[:steps]:
        reference.train_step(x[lo:lo + batch_size], y[lo:lo + batch_size], fastbp.MSELoss(), ref_opt)
    assert _same(_params(model), _params(reference))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(actions=st.lists(st.sampled_from(["evaluate", "predict", "forward", "train_step", "save", "fit"]),
                        min_size=1, max_size=4))
def test_fuzz_re_entrant_callbacks_never_deadlock(tmp_path_factory, actions):
    folder = tmp_path_factory.mktemp("callback")
    model = _net()
    x, y = _data()
    opt = fastbp.SGD(model.parameters(), lr=0.05)
    loss = fastbp.MSELoss()
    calls = {"evaluate": lambda: model.evaluate(x, y, loss), "predict": lambda: model.predict(x),
             "forward": lambda: model.forward(x), "train_step": lambda: model.train_step(x, y, loss, opt),
             "save": lambda: model.save(folder / "m.npz"),
             "fit": lambda: model.fit(x, y, loss=loss, optimizer=opt, epochs=1)}

    def callback(epoch, history):
        for action in actions:
            calls[action]()
    worker = threading.Thread(target=lambda: model.fit(x, y, loss=loss, optimizer=opt, epochs=2,
                                                       callback=callback), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), f"deadlock with callback actions {actions}"


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(member=st.sampled_from(["fastbp.json.npy", "layers.0.weights.npy", "layers.0.bias.npy",
                               "layers.1.weights.npy"]),
       claim=st.sampled_from(["(100000, 100000)", "(10000000000,)", "(2, 5, 1000000)", "()",
                              "(99999999999999, 99999999999999)", "(-1,)"]),
       compress=st.booleans())
def test_fuzz_size_bombs_are_refused_before_allocating(tmp_path_factory, member, claim, compress):
    """A member whose .npy header claims another shape, stored or deflated:
    always ValueError, never a MemoryError or a long read."""
    folder = tmp_path_factory.mktemp("bomb")
    _net().save(folder / "m.npz")
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(folder / "m.npz") as src, zipfile.ZipFile(folder / "b.npz", "w", method) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == member:
                header_end = data.index(b"\n") + 1
                header = data[:header_end].decode("latin1")
                start = header.index("'shape': ") + len("'shape': ")
                end = header.index(")", start) + 1
                if header[start:end] == claim:
                    return  # not an edit
                fake = header[:start] + claim + header[end:]
                fake = fake[:-1].ljust(len(header) - 1)[:len(header) - 1] + "\n"
                data = fake.encode("latin1") + data[header_end:]
            dst.writestr(info.filename, data)
    with pytest.raises(ValueError, match="not a valid fastbp checkpoint"):
        fastbp.load(folder / "b.npz")


def test_importing_an_uninstalled_checkout_says_what_to_run(tmp_path):
    import shutil

    shutil.copytree(os.path.join(REPO, "fastbp"), tmp_path / "fastbp",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # -S: no site-packages, so no installed fastbp to find kernels through
    result = subprocess.run([sys.executable, "-S", "-c", "import fastbp"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert "pip install -e" in result.stderr and "circular" not in result.stderr
