"""One artificial neuron and a small perceptron, written by hand in NumPy.

This is the first chapter's model: no autograd, no framework. Each model holds
its parameters in a dict of float64 arrays and exposes the same three things:

- ``logits(X)``: the forward pass up to the last pre-activation ``z``;
- ``loss(X, y)``: the mean log-loss (binary cross-entropy) of those logits;
- ``gradients(X, y)``: the gradient of that loss for every parameter,
  derived by hand (the chapter writes the derivation out).

``train`` runs plain full-batch gradient descent on either model, and
``gradient_check`` compares the hand-written gradients with centred finite
differences. Everything is deterministic from a seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray


# --- toy data sets ---------------------------------------------------------------

def blobs(n: int = 200, seed: int = 0, distance: float = 4.0, spread: float = 0.7) -> tuple[Array, Array]:
    """Two Gaussian clouds in the plane, ``n`` points, labels 0 and 1: linearly separable (almost surely).

    The centres sit at ``(-distance/2, -distance/2)`` and ``(distance/2, distance/2)`` over ``sqrt(2)``,
    so they are ``distance`` apart; ``spread`` is the standard deviation of each cloud.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    centre = (distance / 2 / np.sqrt(2)) * np.where(y[:, None] == 1, 1.0, -1.0)
    X = centre + spread * rng.standard_normal((n, 2))
    order = rng.permutation(n)
    return X[order], y[order]


def moons(n: int = 200, seed: int = 0, noise: float = 0.12) -> tuple[Array, Array]:
    """Two interleaved half-circles, centred on the origin: no straight line separates them."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    t = rng.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    X = np.where(y[:, None] == 0, upper, lower) - np.array([0.5, 0.25])
    X = X + noise * rng.standard_normal((n, 2))
    return X, y


# --- building blocks ---------------------------------------------------------------

def sigmoid(z: Array) -> Array:
    """``1 / (1 + exp(-z))`` without overflow for large negative ``z``."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def log_loss(z: Array, y: Array) -> float:
    """Mean binary cross-entropy of logits ``z`` against labels ``y`` in {0, 1}.

    ``-[y log s(z) + (1 - y) log(1 - s(z))]`` simplifies to ``log(1 + e^z) - y z``,
    and ``np.logaddexp(0, z)`` computes ``log(1 + e^z)`` without overflow or ``log(0)``.
    """
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def accuracy(model, X: Array, y: Array) -> float:
    """Share of points whose predicted class (``z >= 0``) equals the label."""
    return float(np.mean(model.predict(X) == y))


class _Binary:
    """What both models share: probabilities, hard predictions and the loss, from ``logits``."""

    params: dict[str, Array]

    def logits(self, X: Array) -> Array:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def predict_proba(self, X: Array) -> Array:
        return sigmoid(self.logits(X))

    def predict(self, X: Array) -> Array:
        return (self.logits(X) >= 0).astype(int)

    def loss(self, X: Array, y: Array) -> float:
        return log_loss(self.logits(X), y)

    def n_parameters(self) -> int:
        return sum(p.size for p in self.params.values())


# --- one neuron: logistic regression ---------------------------------------------

class Neuron(_Binary):
    """``p = sigmoid(X @ w + b)``: one weight per input and one bias."""

    def __init__(self, n_inputs: int = 2, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.params = {"w": 0.01 * rng.standard_normal(n_inputs), "b": np.zeros(1)}

    def logits(self, X: Array) -> Array:
        return X @ self.params["w"] + self.params["b"][0]

    def gradients(self, X: Array, y: Array) -> dict[str, Array]:
        # dL/dz_i = (sigmoid(z_i) - y_i) / n, then the chain rule through z = Xw + b.
        dz = (self.predict_proba(X) - y) / len(y)
        return {"w": X.T @ dz, "b": np.array([dz.sum()])}


# --- a small multi-layer perceptron ------------------------------------------------

class MLP(_Binary):
    """Fully connected layers with ``tanh`` between them and one logit at the end.

    ``sizes=(2, 16, 16, 1)`` is two hidden layers of 16 units. Weights start at
    ``N(0, 1/fan_in)`` (keeps ``tanh`` out of saturation), biases at zero.
    """

    def __init__(self, sizes: tuple[int, ...] = (2, 16, 16, 1), seed: int = 0):
        if sizes[-1] != 1:
            raise ValueError("the last layer must have one unit (a binary logit)")
        rng = np.random.default_rng(seed)
        self.sizes = tuple(sizes)
        self.params = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            self.params[f"W{i}"] = rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
            self.params[f"b{i}"] = np.zeros(fan_out)

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def _forward(self, X: Array) -> tuple[Array, list[Array]]:
        """The logits and the input of every layer (``h0 = X``, ``h1``, ...), kept for the backward pass."""
        h, inputs = X, []
        for i in range(1, self.n_layers + 1):
            inputs.append(h)
            z = h @ self.params[f"W{i}"] + self.params[f"b{i}"]
            h = np.tanh(z) if i < self.n_layers else z
        return h[:, 0], inputs

    def logits(self, X: Array) -> Array:
        return self._forward(X)[0]

    def gradients(self, X: Array, y: Array) -> dict[str, Array]:
        z, inputs = self._forward(X)
        grads = {}
        dz = ((sigmoid(z) - y) / len(y))[:, None]            # dL/dz of the last layer, shape (n, 1)
        for i in range(self.n_layers, 0, -1):
            h = inputs[i - 1]                                # the input of layer i
            grads[f"W{i}"] = h.T @ dz
            grads[f"b{i}"] = dz.sum(axis=0)
            if i > 1:                                        # back through W_i, then through tanh
                dh = dz @ self.params[f"W{i}"].T
                dz = dh * (1.0 - h**2)                       # tanh'(a) = 1 - tanh(a)^2, and h = tanh(a)
        return grads


# --- gradient descent and the gradient check ------------------------------------------

@dataclass
class History:
    """Loss and accuracy on the training set, measured before each step (and once after the last), and the
    wall-clock seconds the whole training took."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.loss) - 1


def train(model: _Binary, X: Array, y: Array, steps: int, lr: float) -> History:
    """Full-batch gradient descent: ``theta <- theta - lr * dL/dtheta`` for every parameter, ``steps`` times."""
    history = History()
    started = time.perf_counter()

    def record() -> None:
        z = model.logits(X)
        history.loss.append(log_loss(z, y))
        history.accuracy.append(float(np.mean((z >= 0) == y)))

    for _ in range(steps):
        record()
        for name, grad in model.gradients(X, y).items():
            model.params[name] -= lr * grad
    record()
    history.seconds = time.perf_counter() - started
    return history


def numerical_gradients(model: _Binary, X: Array, y: Array, eps: float = 1e-6) -> dict[str, Array]:
    """``(L(theta + eps) - L(theta - eps)) / (2 eps)``, one parameter entry at a time."""
    grads = {}
    for name, param in model.params.items():
        grad = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            saved = param[index]
            param[index] = saved + eps
            plus = model.loss(X, y)
            param[index] = saved - eps
            minus = model.loss(X, y)
            param[index] = saved
            grad[index] = (plus - minus) / (2 * eps)
        grads[name] = grad
    return grads


def relative_error(a: Array, b: Array) -> float:
    """``||a - b|| / (||a|| + ||b||)``: 0 when equal, 1 when opposite; scale-free."""
    denominator = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denominator) if denominator > 0 else 0.0


def gradient_check(model: _Binary, X: Array, y: Array, eps: float = 1e-6) -> float:
    """Relative error between ``model.gradients`` and finite differences, all parameters together.

    With float64 and ``eps=1e-6`` a correct derivation gives errors around 1e-9
    or below; a mistake (a wrong sign, a missing factor) gives errors near 1e-1 or more.
    """
    analytic = model.gradients(X, y)
    numeric = numerical_gradients(model, X, y, eps)
    names = list(model.params)
    return relative_error(np.concatenate([analytic[k].ravel() for k in names]),
                          np.concatenate([numeric[k].ravel() for k in names]))
