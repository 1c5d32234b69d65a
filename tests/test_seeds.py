"""The worked numbers of the five seed notebooks, reproduced with fastbp's layers."""
import copy

import numpy as np
import torch

import fastbp
from fastbp import LinearLayer, ReLU, Sigmoid


def test_seed000_221_sigmoid_net_without_biases():
    x = np.array([[0.35, 0.9]])
    t = np.array([[0.5]])
    net = fastbp.Sequential(
        fastbp.Linear(2, 2, activation="sigmoid", bias=False, dtype=np.float64),
        fastbp.Linear(2, 1, activation="sigmoid", bias=False, dtype=np.float64))
    net[0].weights = [[0.1, 0.4], [0.8, 0.6]]
    net[1].weights = [[0.3], [0.9]]
    loss = fastbp.MSELoss(reduction="half_sum")

    y = net.forward(x)
    value = loss(y, t)
    net.backward(loss.backward())

    # the notebook's printed values, to the digits it printed
    np.testing.assert_allclose(net[0].output, [[0.6802672, 0.6637387]], atol=5e-8)
    np.testing.assert_allclose(y, [[0.69028349]], atol=5e-9)
    np.testing.assert_allclose(value, 0.0181039, atol=5e-8)
    np.testing.assert_allclose(net[1].grad_weights, [[0.02767403], [0.02700164]], atol=5e-9)
    np.testing.assert_allclose(net[0].grad_weights, [[0.000929, 0.00286], [0.002389, 0.007354]],
                               atol=5e-7)
    np.testing.assert_allclose(net[0].weights - net[0].grad_weights,
                               [[0.099071, 0.39714], [0.797611, 0.592646]], atol=5e-7)


def t2a(x):
    return x.detach().numpy()


def test(arr, tens, eps=1e-6):  # the notebook's own check, kept verbatim
    assert np.max(np.abs(arr - t2a(tens))) < eps


test.__test__ = False  # a helper of the notebook, not a pytest test


def test_seed001_manual_cells_run_unchanged_with_fastbp_classes():
    # --- the notebook's data and torch net (cells 3-30) ---
    np.random.seed(501)
    x_in = np.random.uniform(-1, 1, size=(8, 2))
    xt_in = torch.Tensor(x_in)
    y = np.random.choice([0, 1], size=(8, 1))
    yt = torch.Tensor(y)
    torch.manual_seed(501)
    np.random.seed(501)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.h0 = torch.nn.Linear(2, 4)
            self.h1 = torch.nn.Linear(4, 1)

        def forward(self, xb):
            return self.h1(torch.nn.functional.relu(self.h0(xb)))

    raw_net = Net()
    net1 = copy.deepcopy(raw_net)
    net2 = copy.deepcopy(raw_net)
    probs1 = torch.sigmoid(net1(xt_in))
    loss1 = torch.nn.functional.binary_cross_entropy(probs1, yt)
    loss1.backward()
    loss2 = torch.nn.functional.binary_cross_entropy_with_logits(net2(xt_in), yt)
    loss2.backward()

    # --- the manual-implementation cells 34-46, with fastbp's classes ---
    l0 = LinearLayer((2, 4))
    l0.weights = raw_net.h0.weight.detach().T.numpy()
    l0.bias = raw_net.h0.bias.detach().numpy()
    l1 = LinearLayer((4, 1))
    l1.weights = raw_net.h1.weight.detach().T.numpy()
    l1.bias = raw_net.h1.bias.detach().numpy()
    a0 = ReLU()
    a1 = Sigmoid()
    layers = [l0, a0, l1, a1]

    out = x_in.copy()
    for layer in layers:
        out = layer.forward_pass(out)
    probs_np = out
    # sklearn.metrics.log_loss(y, probs_np), written out (sklearn is no dependency)
    loss_np = -np.mean(y * np.log(probs_np) + (1 - y) * np.log(1 - probs_np))
    assert np.max(np.abs(probs_np - t2a(probs1))) < 1e-6
    assert np.max(np.abs(loss_np - t2a(loss1))) < 1e-6

    grad = -(y / probs_np) + (1 - y) / (1 - probs_np)
    grad /= grad.shape[0]
    for layer in layers[::-1]:
        grad = layer.backward_pass(grad)

    test(l1.grad_weights, net2.h1.weight.grad.T)
    test(l1.grad_bias, net2.h1.bias.grad)
    test(l0.grad_weights, net2.h0.weight.grad.T)
    test(l0.grad_bias, net2.h0.bias.grad)
    # BCE on probabilities and BCE on logits agree, as the notebook shows
    test(l0.grad_weights, net1.h0.weight.grad.T)
    # and fastbp's own BCE losses give torch's value
    assert abs(fastbp.BCELoss()(probs_np, y) - loss1.item()) < 1e-6


def test_seed002_conv_tanh_scale_sigmoid_network():
    x = np.array([[1., 2., 3.], [4., 5., 6.], [7., 8., 9.]])
    w1 = np.array([[0.1, -0.1], [0.2, 0.001]])
    w2 = np.array([0.0005, -0.2, 0.2, 0.5])
    y = np.array([-1., -1., 1., 1.])
    # The 2x2 valid convolution as a dense layer on the 4 patches (im2col):
    # row p holds the 4 input values under the kernel at output position p.
    patches = np.array([x[r:r + 2, c:c + 2].ravel() for r in range(2) for c in range(2)])
    conv = fastbp.Linear(4, 1, bias=False, dtype=np.float64)
    conv.weights = w1.reshape(4, 1)
    tanh, sigmoid = fastbp.Tanh(), fastbp.Sigmoid()
    loss = fastbp.MSELoss(reduction="half_sum")

    L1 = conv.forward(patches).ravel()
    L1A = tanh.forward(L1)
    L2 = L1A * w2
    L2A = sigmoid.forward(L2)
    value = loss(L2A, y)

    d_L2 = sigmoid.backward(loss.backward())
    d_w2 = d_L2 * L1A
    d_L1 = tanh.backward(d_L2 * w2)
    conv.backward(d_L1.reshape(4, 1))
    d_w1 = conv.grad_weights.reshape(2, 2)

    np.testing.assert_allclose(L1, [0.705, 0.906, 1.308, 1.509], atol=5e-16)
    np.testing.assert_allclose(L2, [3.03765944e-04, -1.43841367e-01, 1.72753696e-01, 4.53380714e-01],
                               rtol=5e-9)
    np.testing.assert_allclose(value, 2.3767862745225306, rtol=1e-14)
    np.testing.assert_allclose(d_w2, [0.22783599, 0.26189097, -0.09793547, -0.08370645], atol=5e-9)
    np.testing.assert_allclose(d_L1, [0.0001183, -0.03515696, -0.00575761, -0.00820593], atol=5e-9)
    np.testing.assert_allclose(d_w1[0, 0], -0.1342557202950444, rtol=1e-13)



def test_seed002_with_fastbp_conv2d_scale_and_flatten_layers():
    """The same network built from fastbp's own layers: Conv2D (1 -> 1 channel,
    2x2 kernel, no bias) with tanh, Flatten, Scale(4), Sigmoid."""
    x = np.array([[1., 2., 3.], [4., 5., 6.], [7., 8., 9.]]).reshape(1, 1, 3, 3)
    w1 = np.array([[0.1, -0.1], [0.2, 0.001]])
    w2 = np.array([0.0005, -0.2, 0.2, 0.5])
    y = np.array([[-1., -1., 1., 1.]])
    conv = fastbp.Conv2D(1, 1, 2, activation="tanh", bias=False, dtype=np.float64)
    conv.weights = w1.reshape(1, 1, 2, 2)
    scale = fastbp.Scale(4, init=w2, dtype=np.float64)
    net = fastbp.Sequential(conv, fastbp.Flatten(), scale, fastbp.Sigmoid())
    loss = fastbp.MSELoss(reduction="half_sum")

    value = loss(net.forward(x), y)
    d_L1A = net.backward(loss.backward())

    L1 = np.arctanh(conv.output).ravel()  # the notebook's pre-activation
    np.testing.assert_allclose(L1, [0.705, 0.906, 1.308, 1.509], rtol=1e-14)
    np.testing.assert_allclose(scale.output.ravel(), [3.03765944e-04, -1.43841367e-01, 1.72753696e-01,
                                                      4.53380714e-01], rtol=5e-9)
    np.testing.assert_allclose(value, 2.3767862745225306, rtol=1e-14)
    np.testing.assert_allclose(scale.grad_weights, [0.22783599, 0.26189097, -0.09793547, -0.08370645],
                               atol=5e-9)
    # d_L1 (the gradient at the convolution's pre-activation) times the input
    # patch gives d_w1; the notebook prints both
    d_L1 = (scale.backward(net[3].backward(loss.backward())).reshape(1, 1, 2, 2)
            * (1 - conv.output ** 2)).ravel()
    np.testing.assert_allclose(d_L1, [0.0001183, -0.03515696, -0.00575761, -0.00820593], atol=5e-9)
    np.testing.assert_allclose(conv.grad_weights[0, 0, 0, 0], -0.1342557202950444, rtol=1e-13)
    assert d_L1A.shape == x.shape

def test_seed003_L_layer_sigmoid_net_with_layer0_gradient_from_the_input():
    """The notebook's 7-5-3-1 net in column form (z = W a + b). Its loop takes
    layer 0's weight gradient from a[-1] (the *last* activation), giving shape
    [5, 1]; the right one uses the input x and has W0's shape [5, 7]."""
    torch.manual_seed(0)
    x = torch.randn(7, 1, dtype=torch.float64)
    y = torch.randn(1, 1, dtype=torch.float64)
    W = [torch.randn(5, 7, dtype=torch.float64, requires_grad=True),
         torch.randn(3, 5, dtype=torch.float64, requires_grad=True),
         torch.randn(1, 3, dtype=torch.float64, requires_grad=True)]
    b = [torch.randn(n, 1, dtype=torch.float64, requires_grad=True) for n in (5, 3, 1)]
    a = x
    for W_l, b_l in zip(W, b):
        a = torch.sigmoid(W_l @ a + b_l)
    torch_loss = 0.5 * ((a - y) ** 2).sum()
    torch_loss.backward()

    # fastbp is batch-first: weights are the notebook's W transposed, x a row
    net = fastbp.Sequential(*[fastbp.Linear(W_l.shape[1], W_l.shape[0], activation="sigmoid",
                                            dtype=np.float64) for W_l in W])
    for layer, W_l, b_l in zip(net, W, b):
        layer.weights = W_l.detach().numpy().T
        layer.bias = b_l.detach().numpy().ravel()
    loss = fastbp.MSELoss(reduction="half_sum")
    value = loss(net.forward(x.numpy().T), y.numpy())
    net.backward(loss.backward())

    assert abs(value - torch_loss.item()) < 1e-14
    for layer, W_l, b_l in zip(net, W, b):
        assert layer.grad_weights.T.shape == tuple(W_l.shape)
        np.testing.assert_allclose(layer.grad_weights.T, W_l.grad.numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(layer.grad_bias, b_l.grad.numpy().ravel(), rtol=1e-12, atol=1e-15)
    # layer 0's gradient is delta0 x^T, not delta0 a[L]^T as the notebook computed
    delta0 = net[0].output.T * (1 - net[0].output.T) * (W[1].detach().numpy().T @ (
        net[1].output.T * (1 - net[1].output.T) * (W[2].detach().numpy().T @ (
            (net[2].output.T - y.numpy()) * net[2].output.T * (1 - net[2].output.T))))).reshape(5, 1)
    np.testing.assert_allclose(net[0].grad_weights.T, delta0 @ x.numpy().T, rtol=1e-12)


class FeedForward_Neural_Network:  # seed 004's numpy network, verbatim in substance
    def __init__(self, learning_rate):
        self.learning_rate = learning_rate
        self.weight1 = np.array([[2.12444863, 0.25264613, 1.45417876, 0.56923979, 0.45822365],
                                 [-0.80933344, 0.86407349, 0.20170137, -1.87529904, -0.56850693]])
        self.weight2 = np.array([[-0.06510141, 0.80681666, -0.5778176],
                                 [0.57306064, -0.33667496, 0.29700734],
                                 [-0.37480416, 0.15510474, 0.70485719],
                                 [0.8452178, -0.65818079, 0.56810558],
                                 [0.51538125, -0.61564998, 0.92611427]])

    def forward(self, X):
        self.h1 = np.dot(X, self.weight1)
        self.z1 = self.sigmoid(self.h1)
        self.h2 = np.dot(self.z1, self.weight2)
        return self.sigmoid(self.h2)

    def backward(self, X, y, o):
        self.o_error = y - o
        self.o_delta = self.o_error * self.sigmoid_prime(o)
        self.z1_error = self.o_delta.dot(self.weight2.T)
        self.z1_delta = self.z1_error * self.sigmoid_prime(self.z1)
        self.weight1 += X.T.dot(self.z1_delta) * self.learning_rate
        self.weight2 += self.z1.T.dot(self.o_delta) * self.learning_rate

    def sigmoid(self, s):
        return 1 / (1 + np.exp(-s))

    def sigmoid_prime(self, s):
        return s * (1 - s)


def seed004_model(notebook):
    net = fastbp.Sequential(fastbp.Linear(2, 5, activation="sigmoid", bias=False, dtype=np.float64),
                            fastbp.Linear(5, 3, activation="sigmoid", bias=False, dtype=np.float64))
    net[0].weights = notebook.weight1
    net[1].weights = notebook.weight2
    return net


def test_seed004_253_sigmoid_net_forward_and_one_update():
    (x_train, y_train), _ = fastbp.gaussian_blobs()
    xs, ys = x_train[:8], fastbp.one_hot(y_train[:8], 3)
    notebook = FeedForward_Neural_Network(learning_rate=0.1)
    net = seed004_model(notebook)

    o = notebook.forward(xs)
    np.testing.assert_allclose(net.forward(xs), o, rtol=1e-14)
    # the notebook's update is SGD on 0.5 * sum of squared errors
    notebook.backward(xs, ys, o)
    net.train_step(xs, ys, fastbp.MSELoss(reduction="half_sum"), fastbp.SGD(net.parameters(), lr=0.1))
    np.testing.assert_allclose(net[0].weights, notebook.weight1, rtol=1e-13)
    np.testing.assert_allclose(net[1].weights, notebook.weight2, rtol=1e-13)


def test_seed004_minibatch_training_reaches_95_percent():
    (x_train, y_train), (x_test, y_test) = fastbp.gaussian_blobs()
    notebook = FeedForward_Neural_Network(learning_rate=0.1)
    net = seed004_model(notebook)
    history = net.fit(x_train, fastbp.one_hot(y_train, 3), loss=fastbp.MSELoss(reduction="half_sum"),
                      optimizer=fastbp.SGD(net.parameters(), lr=0.1), epochs=400, batch_size=8,
                      shuffle=False)
    test_accuracy = np.mean(np.argmax(net.predict(x_test), axis=1) == y_test)
    assert test_accuracy >= 0.95
    assert history["loss"][-1] < history["loss"][0]
