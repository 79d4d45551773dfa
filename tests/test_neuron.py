"""The NumPy neuron and perceptron of the chapter "Foundations"."""

import numpy as np
import pytest

from text2image.models import neuron as nn


@pytest.fixture(scope="module")
def blobs():
    return nn.blobs(200, seed=0)


@pytest.fixture(scope="module")
def moons():
    return nn.moons(300, seed=0)


def test_sigmoid_and_loss_are_stable():
    z = np.array([-1000.0, -5.0, 0.0, 5.0, 1000.0])
    s = nn.sigmoid(z)
    assert np.all(np.isfinite(s)) and s[0] == 0.0 and s[2] == 0.5 and s[-1] == 1.0
    assert np.allclose(s[1] + s[3], 1.0)
    # A confident wrong answer costs |z|, not inf or nan.
    assert nn.log_loss(np.array([1000.0]), np.array([0])) == pytest.approx(1000.0)
    assert nn.log_loss(np.array([-1000.0]), np.array([0])) == pytest.approx(0.0)


def test_neuron_gradient_matches_finite_differences(blobs):
    X, y = blobs
    model = nn.Neuron(seed=1)
    nn.train(model, X, y, steps=5, lr=0.1)  # away from the symmetric starting point
    assert nn.gradient_check(model, X, y) < 1e-6


@pytest.mark.parametrize("sizes", [(2, 8, 1), (2, 8, 6, 1)])
def test_mlp_gradient_matches_finite_differences(moons, sizes):
    X, y = moons
    model = nn.MLP(sizes, seed=2)
    assert nn.gradient_check(model, X[:60], y[:60]) < 1e-6


def test_gradient_check_catches_a_wrong_derivation(moons):
    X, y = moons

    class ForgotTheMean(nn.Neuron):
        def gradients(self, X, y):
            return {k: g * len(y) for k, g in super().gradients(X, y).items()}

    class WrongTanh(nn.MLP):
        def gradients(self, X, y):
            grads = super().gradients(X, y)
            grads["W1"] = -grads["W1"]
            return grads

    assert nn.gradient_check(ForgotTheMean(seed=0), X, y) > 1e-2
    assert nn.gradient_check(WrongTanh((2, 8, 1), seed=0), X[:60], y[:60]) > 1e-2


def test_training_the_neuron_separates_the_blobs(blobs):
    X, y = blobs
    history = nn.train(nn.Neuron(seed=0), X, y, steps=200, lr=0.5)
    assert history.steps == 200 and len(history.accuracy) == 201
    assert history.loss[-1] < 0.2 * history.loss[0]
    assert all(b <= a + 1e-12 for a, b in zip(history.loss, history.loss[1:]))  # small lr: monotone
    assert history.accuracy[-1] >= 0.98
    assert history.seconds > 0  # the time the foundations chapter quotes


def test_mlp_beats_the_neuron_on_moons(moons):
    X, y = moons
    line = nn.Neuron(seed=0)
    nn.train(line, X, y, steps=1000, lr=0.5)
    mlp = nn.MLP((2, 16, 16, 1), seed=0)
    nn.train(mlp, X, y, steps=1000, lr=0.5)
    assert nn.accuracy(line, X, y) < 0.92
    assert nn.accuracy(mlp, X, y) >= 0.98
    assert mlp.loss(X, y) < 0.25 * line.loss(X, y)


def test_same_seed_same_weights():
    def run(seed):
        X, y = nn.moons(100, seed=seed)
        model = nn.MLP((2, 8, 1), seed=seed)
        nn.train(model, X, y, steps=20, lr=0.3)
        return model.params

    a, b, c = run(0), run(0), run(1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
    X1, y1 = nn.blobs(50, seed=3)
    X2, y2 = nn.blobs(50, seed=3)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)


def test_blobs_and_moons_are_balanced():
    for make in (nn.blobs, nn.moons):
        X, y = make(100, seed=0)
        assert X.shape == (100, 2) and y.shape == (100,) and set(y) == {0, 1} and y.sum() == 50
