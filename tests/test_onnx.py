"""fastbp.to_onnx: every layer type exported, checked by onnx.checker and run
by onnxruntime against fastbp's own forward on random input."""
import numpy as np
import onnx
import onnxruntime
import pytest

import fastbp


def _run(proto, x):
    runtime = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return runtime.run(["y"], {"x": x})[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_models_run_in_onnxruntime_as_in_fastbp(dtype):
    rng = np.random.default_rng(0)
    model = fastbp.Sequential(fastbp.Linear(5, 8, activation="relu", dtype=dtype, rng=rng),
                              fastbp.Dropout(0.5, seed=0),  # inference: the identity
                              fastbp.Linear(8, 6, activation="tanh", bias=False, dtype=dtype, rng=rng),
                              fastbp.Linear(6, 4, dtype=dtype, rng=rng), fastbp.Sigmoid(),
                              fastbp.Scale(4, init=rng.standard_normal(4), dtype=dtype))
    proto = fastbp.to_onnx(model)
    onnx.checker.check_model(proto)
    for batch in (1, 13):  # the batch dimension is dynamic
        x = rng.standard_normal((batch, 5)).astype(dtype)
        np.testing.assert_allclose(_run(proto, x), model.predict(x), rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-6 if dtype == np.float32 else 1e-13)


def test_conv_flatten_and_softmax_export(tmp_path):
    rng = np.random.default_rng(1)
    model = fastbp.Sequential(fastbp.Conv2D(2, 3, (3, 2), stride=(2, 1), padding=1, activation="relu", rng=rng),
                              fastbp.Flatten(), fastbp.Linear(3 * 3 * 6, 5, rng=rng))  # 6x5 -> 3x6
    path = tmp_path / "model.onnx"
    proto = fastbp.to_onnx(model, path, softmax=True)
    assert onnx.load(path) == proto
    x = rng.standard_normal((4, 2, 6, 5)).astype(np.float32)
    np.testing.assert_allclose(_run(proto, x), model.predict_proba(x), rtol=1e-5, atol=1e-6)
    assert [n.op_type for n in proto.graph.node] == ["Conv", "Relu", "Flatten", "Gemm", "Softmax", "Identity"]


def test_a_layer_without_an_onnx_form_is_refused_by_index():
    class Custom(fastbp.Layer):
        def forward(self, x):
            return x

        def backward(self, grad_out):
            return grad_out

    with pytest.raises(TypeError, match=r"layers\[1\]: Custom has no ONNX equivalent"):
        fastbp.to_onnx(fastbp.Sequential(fastbp.Linear(2, 2, rng=0), Custom()))
