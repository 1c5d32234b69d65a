"""`fastbp.to_onnx(model, path)`: the model as an ONNX graph (the `onnx` extra).

Each layer writes its own nodes (`Layer.to_onnx`): Linear -> Gemm (MatMul
without a bias), Conv2D -> Conv, Scale -> Mul, Flatten -> Flatten, the
activations -> Relu / Sigmoid / Tanh; optionally a final Softmax. The graph
takes "x" with a dynamic batch dimension and gives "y"; parameters are
initializers in the model's dtype. Checked with onnx.checker before it is
returned.
"""
import numpy as np

ACTIVATION_OPS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
OPSET = 17
IR_VERSION = 8  # what opset 17 needs; newer ones are refused by older runtimes


class Graph:
    """What a layer's `to_onnx(graph, x)` builds with: constants and nodes,
    each returning the name of its output."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes, self.initializers = [], []
        self._count = 0

    def _name(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, array, hint):
        name = self._name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, **attributes):
        out = self._name(op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attributes))
        return out

    def activation(self, name, x):
        """x through the named activation ("identity" or None: x itself)."""
        if name in (None, "identity"):
            return x
        return self.node(ACTIVATION_OPS[name], [x])


def _input_shape(layers):
    """The input's shape with "batch" (and "height" / "width") symbolic, or
    None (any rank) when the first layer that fixes it is a Flatten."""
    for layer in layers:
        shape = layer.onnx_input_shape()
        if shape is not False:
            return shape
    return None


def to_onnx(model, path=None, *, softmax=False):
    """The ONNX ModelProto of `model` (a Sequential or one layer), written to
    `path` too when given. softmax=True appends a Softmax over the outputs
    (for a classifier trained on logits). Needs the `onnx` package."""
    try:
        import onnx
    except ImportError:
        raise ImportError("to_onnx needs the onnx package: pip install 'fastbp[onnx]'") from None
    from .model import Sequential

    layers = list(model.layers) if isinstance(model, Sequential) else [model]
    dtypes = {np.dtype(layer.dtype) for layer in layers if getattr(layer, "dtype", None) is not None}
    if len(dtypes) > 1:
        raise TypeError(f"to_onnx: the layers mix dtypes {sorted(map(str, dtypes))}; ONNX graphs take one")
    dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
    elem = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    graph = Graph(onnx)
    x = "x"
    for i, layer in enumerate(layers):
        try:
            x = layer.to_onnx(graph, x)
        except TypeError as exc:
            raise TypeError(f"to_onnx: layers[{i}]: {exc}") from None
    if softmax:
        x = graph.node("Softmax", [x], axis=-1)
    graph.nodes.append(onnx.helper.make_node("Identity", [x], ["y"], name="y"))
    inputs = [onnx.helper.make_tensor_value_info("x", elem, _input_shape(layers))]
    proto = onnx.helper.make_model(onnx.helper.make_graph(graph.nodes, "fastbp", inputs, [], graph.initializers),
                                   opset_imports=[onnx.helper.make_opsetid("", OPSET)], producer_name="fastbp")
    proto.ir_version = IR_VERSION
    # the output's shape as ONNX's own shape inference derives it (symbolic batch)
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(proto).graph.value_info}
    proto.graph.output.append(inferred.get("y") or onnx.helper.make_tensor_value_info("y", elem, None))
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        onnx.save(proto, path)
    return proto
