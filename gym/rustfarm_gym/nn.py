"""A small multilayer perceptron in numpy: forward, manual backward, Adam,
seeded initialisation, ``.npz`` save/load and export to an ONNX graph.

The deep learners (:mod:`rustfarm_gym.dqn`, :mod:`rustfarm_gym.ppo`) are
built on it, so that every algorithm of the training CLI runs without torch.

The network maps a raw farm observation to one output per action. Its first
step rescales the observation from the spec's ``[low, high]`` box to
``[-1, 1]`` (``x * scale + shift``); this rescaling is part of the exported
graph too, so the model is fed the observation as-is (metadata
``normalisation`` ``identity`` / ``{"kind":"none"}``, like every other
exporter of this package).

>>> import numpy as np
>>> net = MLP([3, 8, 2], low=[0, 0, 0], high=[1, 1, 2], seed=0)
>>> out, cache = net.forward_train(np.ones((4, 3)))
>>> grads = net.backward(cache, np.ones_like(out))
>>> Adam(net.params, lr=1e-3).step(grads)
>>> out.shape
(4, 2)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .onnx_export import OPSET

#: Hidden-layer non-linearities this module implements (forward, backward, ONNX op).
ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu"}


class MLP:
    """Fully connected network ``sizes[0] -> ... -> sizes[-1]``.

    Hidden layers use ``activation``; the output layer is linear. Weights are
    float64 (training precision); the ONNX export is float32.

    Args:
        sizes: layer widths, input first (at least two entries).
        activation: ``"tanh"`` or ``"relu"``.
        low, high: observation bounds used for the input rescaling (defaults:
            no rescaling, i.e. the box ``[-1, 1]``).
        seed: seed of the initialisation (or pass ``rng``).
        out_gain: scale of the output layer's initial weights (small for
            policy logits, so the initial policy is close to uniform).
    """

    def __init__(self, sizes: Sequence[int], *, activation: str = "tanh",
                 low: Sequence[float] | np.ndarray | None = None,
                 high: Sequence[float] | np.ndarray | None = None,
                 seed: int = 0, rng: np.random.Generator | None = None,
                 out_gain: float = 1.0) -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list at least two positive widths, got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.sizes = sizes
        self.activation = activation
        dim = sizes[0]
        lo = -np.ones(dim) if low is None else np.asarray(low, dtype=np.float64)
        hi = np.ones(dim) if high is None else np.asarray(high, dtype=np.float64)
        if lo.shape != (dim,) or hi.shape != (dim,):
            raise ValueError(f"low/high must have shape ({dim},), got {lo.shape}, {hi.shape}")
        # Degenerate features (low == high) pass through shifted, not divided by 0.
        span = np.maximum(hi - lo, 1e-6)
        self.scale = 2.0 / span
        self.shift = -1.0 - lo * self.scale
        rng = rng if rng is not None else np.random.default_rng(seed)
        # Variance-preserving init (He for relu, LeCun for tanh); zero biases.
        gain = np.sqrt(2.0) if activation == "relu" else 1.0
        self.params: list[np.ndarray] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            g = out_gain if i == len(sizes) - 2 else gain
            self.params.append(rng.normal(0.0, g / np.sqrt(fan_in), size=(fan_in, fan_out)))
            self.params.append(np.zeros(fan_out))

    @property
    def n_layers(self) -> int:
        """Number of affine layers."""
        return len(self.sizes) - 1

    def normalise(self, obs: np.ndarray) -> np.ndarray:
        """The observation rescaled from ``[low, high]`` to ``[-1, 1]``."""
        x = np.asarray(obs, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"expected observations of shape [N, {self.sizes[0]}], "
                             f"got {x.shape}")
        return x * self.scale + self.shift

    def _act(self, z: np.ndarray) -> np.ndarray:
        return np.tanh(z) if self.activation == "tanh" else np.maximum(z, 0.0)

    def forward(self, obs: np.ndarray) -> np.ndarray:
        """Outputs ``[N, sizes[-1]]`` for observations ``[N, sizes[0]]``."""
        h = self.normalise(obs)
        for i in range(self.n_layers):
            z = h @ self.params[2 * i] + self.params[2 * i + 1]
            h = self._act(z) if i < self.n_layers - 1 else z
        return h

    __call__ = forward

    def forward_train(self, obs: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Outputs and the layer inputs/activations :meth:`backward` needs."""
        h = self.normalise(obs)
        cache = [h]
        for i in range(self.n_layers):
            z = h @ self.params[2 * i] + self.params[2 * i + 1]
            h = self._act(z) if i < self.n_layers - 1 else z
            cache.append(h)
        return h, cache

    def backward(self, cache: list[np.ndarray], dout: np.ndarray) -> list[np.ndarray]:
        """Gradients of ``sum(dout * outputs)`` w.r.t. :attr:`params` (same order)."""
        grads: list[np.ndarray] = [np.empty(0)] * len(self.params)
        d = np.asarray(dout, dtype=np.float64)
        for i in reversed(range(self.n_layers)):
            h_in = cache[i]
            grads[2 * i] = h_in.T @ d
            grads[2 * i + 1] = d.sum(axis=0)
            if i > 0:
                d = d @ self.params[2 * i].T
                # Derivative of the activation, from its output.
                a = cache[i]
                d = d * (1.0 - a * a) if self.activation == "tanh" else d * (a > 0.0)
        return grads

    def copy(self) -> MLP:
        """An independent copy (same shape, bounds and weights)."""
        other = object.__new__(MLP)
        other.sizes = list(self.sizes)
        other.activation = self.activation
        other.scale = self.scale.copy()
        other.shift = self.shift.copy()
        other.params = [p.copy() for p in self.params]
        return other

    def load_params(self, other: MLP) -> None:
        """Copy ``other``'s weights into this network (e.g. a target-net sync)."""
        if [p.shape for p in other.params] != [p.shape for p in self.params]:
            raise ValueError("networks have different shapes")
        for dst, src in zip(self.params, other.params, strict=True):
            dst[...] = src

    def save(self, path: str | Path) -> Path:
        """Write shape, bounds and weights to an ``.npz`` file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "sizes": np.asarray(self.sizes, dtype=np.int64),
            "activation": np.asarray(self.activation),
            "scale": self.scale, "shift": self.shift,
        }
        arrays.update({f"p{i}": p for i, p in enumerate(self.params)})
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> MLP:
        """Read a network written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            net = object.__new__(cls)
            net.sizes = [int(s) for s in z["sizes"]]
            net.activation = str(z["activation"])
            if net.activation not in ACTIVATIONS:
                raise ValueError(f"{path}: unknown activation {net.activation!r}")
            net.scale = z["scale"].astype(np.float64)
            net.shift = z["shift"].astype(np.float64)
            net.params = [z[f"p{i}"].astype(np.float64) for i in range(2 * (len(net.sizes) - 1))]
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(net.sizes)):
            if net.params[2 * i].shape != (fan_in, fan_out) or net.params[2 * i + 1].shape != (
                    fan_out,):
                raise ValueError(f"{path}: layer {i} has the wrong shape")
        return net

    def onnx_graph(self, output: str, *, name: str = "mlp_policy") -> onnx.ModelProto:
        """ONNX model ``obs [N, in] -> output [N, out]`` computing :meth:`forward` in float32.

        Ops: ``Mul``/``Add`` for the input rescaling, then ``Gemm`` per layer
        with ``Tanh`` or ``Relu`` between layers.
        """
        f32 = np.float32
        inits = [numpy_helper.from_array(self.scale.astype(f32), "in_scale"),
                 numpy_helper.from_array(self.shift.astype(f32), "in_shift")]
        nodes = [helper.make_node("Mul", ["obs", "in_scale"], ["obs_scaled"]),
                 helper.make_node("Add", ["obs_scaled", "in_shift"], ["h0"])]
        h = "h0"
        for i in range(self.n_layers):
            w, b = f"W{i}", f"b{i}"
            inits += [numpy_helper.from_array(self.params[2 * i].astype(f32), w),
                      numpy_helper.from_array(self.params[2 * i + 1].astype(f32), b)]
            last = i == self.n_layers - 1
            z = output if last else f"z{i + 1}"
            nodes.append(helper.make_node("Gemm", [h, w, b], [z]))
            if not last:
                h = f"h{i + 1}"
                nodes.append(helper.make_node(ACTIVATIONS[self.activation], [z], [h]))
        graph = helper.make_graph(
            nodes, name,
            [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["N", self.sizes[0]])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", self.sizes[-1]])],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="rustfarm_gym")
        # Stay loadable by older ONNX Runtime builds (gateway-ext's ort).
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


class Adam:
    """Adam (Kingma & Ba) updating a list of arrays in place."""

    def __init__(self, params: Sequence[np.ndarray], lr: float = 1e-3, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.params = list(params)
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def step(self, grads: Sequence[np.ndarray]) -> None:
        """One descent step along ``grads`` (gradients of the loss to minimise)."""
        if len(grads) != len(self.params):
            raise ValueError(f"{len(grads)} gradients for {len(self.params)} parameters")
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        lr_t = self.lr * np.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            p -= lr_t * m / (np.sqrt(v) + self.eps)


def clip_grad_norm(grads: Sequence[np.ndarray], max_norm: float) -> float:
    """Scale ``grads`` in place so their global L2 norm is at most ``max_norm``.

    Returns the norm before clipping.
    """
    norm = float(np.sqrt(sum(float((g * g).sum()) for g in grads)))
    if norm > max_norm > 0.0:
        for g in grads:
            g *= max_norm / norm
    return norm
