"""Models, layers, losses and optimizers pickle and deep-copy, restoring to
objects that predict and train exactly like the originals."""
import copy
import pickle

import numpy as np
import pytest

import fastbp


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((24, 3)).astype(np.float32), rng.integers(0, 2, 24)


def _model():
    return fastbp.Sequential(fastbp.Linear(3, 8, activation="relu", rng=1), fastbp.Linear(8, 2, rng=2))


def _fit(model, optimizer, x, y):
    return model.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=optimizer, epochs=3, batch_size=5,
                     progress=False, rng=0)


ROUND_TRIPS = {
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
    "pickle optimizer first": lambda obj: pickle.loads(pickle.dumps(obj[::-1]))[::-1],
    "deepcopy": copy.deepcopy,
}


@pytest.mark.parametrize("how", sorted(ROUND_TRIPS))
@pytest.mark.parametrize("make_optimizer", [lambda p: fastbp.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                                            lambda p: fastbp.AdamW(p, lr=0.01)])
def test_a_restored_model_and_optimizer_train_on_identically(how, make_optimizer):
    x, y = _data()
    model = _model()
    optimizer = make_optimizer(model.parameters())
    _fit(model, optimizer, x, y)
    restored, restored_optimizer = ROUND_TRIPS[how]((model, optimizer))
    assert restored is not model and restored.fused is not None
    np.testing.assert_array_equal(restored.predict(x), model.predict(x))
    assert restored_optimizer.step_count == optimizer.step_count
    one, two = _fit(model, optimizer, x, y), _fit(restored, restored_optimizer, x, y)
    assert one["loss"] == two["loss"]
    np.testing.assert_array_equal(restored.fused.params, model.fused.params)
    assert restored_optimizer._network is restored.fused  # it trains the restored model's buffers
    assert not np.shares_memory(restored.fused.params, model.fused.params)


def test_a_pickled_model_keeps_no_tie_to_the_original():
    x, y = _data()
    model = _model()
    copied = pickle.loads(pickle.dumps(model))
    _fit(model, fastbp.SGD(model.parameters(), lr=0.5), x, y)
    assert not np.array_equal(copied.predict(x), model.predict(x))
    assert all(layer._packed_in is copied.fused for layer in copied.layers)


def test_layer_path_models_losses_and_lone_layers_pickle():
    x, y = _data()
    model = fastbp.Sequential(fastbp.Linear(3, 4, rng=0), fastbp.Tanh(), fastbp.Linear(4, 2, rng=1))
    loss = fastbp.CrossEntropyLoss(reduction="sum")
    restored, restored_loss = pickle.loads(pickle.dumps((model, loss)))
    assert restored.fused is None and restored_loss.reduction == "sum"
    one = _fit(model, fastbp.Adam(model.parameters()), x, y)
    two = _fit(restored, fastbp.Adam(restored.parameters()), x, y)
    assert one["loss"] == two["loss"]
    layer = copy.deepcopy(_model().layers[0])  # a packed layer, copied out of its model
    assert layer._packed_in is None and layer.weights.base is None
    np.testing.assert_array_equal(layer.forward(x), _model().layers[0].forward(x))
