"""torch interop: from_torch and to_torch give the same outputs."""

import numpy as np
import pytest
import torch

import fastbp
from conftest import assert_close


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_from_torch_and_back_give_the_same_outputs(dtype):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8, bias=False),
                              torch.nn.Tanh(), torch.nn.Sigmoid(), torch.nn.Linear(8, 3),
                              torch.nn.Identity()).to(dtype)
    model = fastbp.from_torch(net)
    assert [type(layer).__name__ for layer in model] == ["Linear", "Linear", "Sigmoid", "Linear"]
    assert model.fused is None  # a standalone Sigmoid layer in between
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32 if dtype == torch.float32 else np.float64)
    with torch.no_grad():
        expected = net(torch.from_numpy(x))
    assert_close(model.predict(x), expected)
    back = model.to_torch()
    with torch.no_grad():
        assert_close(back(torch.from_numpy(x)).numpy(), expected)


def test_from_torch_conv_net_and_refusals():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(3 * 3 * 3, 2))
    model = fastbp.from_torch(net)
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5)).astype(np.float32)
    with torch.no_grad():
        assert_close(model.predict(x), net(torch.from_numpy(x)))
        assert_close(model.to_torch()(torch.from_numpy(x)).numpy(), net(torch.from_numpy(x)))
    with pytest.raises(TypeError, match="module\\[0\\] is a LSTM"):
        fastbp.from_torch(torch.nn.LSTM(2, 2))
    with pytest.raises(ValueError, match="dilation"):
        fastbp.from_torch(torch.nn.Conv2d(1, 1, 3, dilation=2))
    with pytest.raises(TypeError, match="float32 or float64"):
        fastbp.from_torch(torch.nn.Linear(2, 2).to(torch.float16))
    with pytest.raises(TypeError, match="Scale has no torch module"):
        fastbp.Sequential(fastbp.Scale(2)).to_torch()


def test_from_torch_single_linear_trains_like_torch():
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 2)
    model = fastbp.from_torch(linear)
    np.testing.assert_array_equal(model[0].weights, linear.weight.detach().numpy().T)
    assert model.fused is not None
