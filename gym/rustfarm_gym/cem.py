"""Cross-entropy-method (CEM) policy search over whole simulated runs.

``python -m rustfarm_gym.cem --out runs/cem``

A derivative-free alternative to the value-based learners in
:mod:`rustfarm_gym.train`: the policy is a linear scorer over the
observation (``logits = obs @ W + b``, greedy action = argmax) or a small
tanh MLP, and CEM searches its parameters directly on the objective the farm
is judged by, per whole run:

``score = qos - cost * mean_replicas / max_replicas - miss * min(miss_cap, max(0, target - qos))``

(``--miss-cap`` unset counts the whole shortfall; ``--qos-cap`` counts
``min(qos, target)`` in the first term).

Each generation samples ``--pop`` parameter vectors from a diagonal
Gaussian, runs every candidate greedily on the same ``--episodes`` runs
(common random numbers: the same scenarios, episode seeds and domain
randomisation for every candidate, so candidates are compared on equal
terms), keeps the best ``--elite`` fraction and refits the Gaussian to them
(with smoothing and a noise floor that decays, as usual for CEM on
policies). Every run is a complete scenario run as ``farmctl sim eval``
measures it.

Training draws runs from built-in scenarios (``--scenarios``) and from
training-only shapes generated here (:func:`training_scenarios`: step
changes, fast oscillations, slow cold starts) that are not in the public
suite, all domain-randomised on the server (arrival rate, service-time mean
and shape, start-up delays). ``paper-4phase`` and the scenarios in
``--eval-scenarios`` are never trained on. The same ``--seed`` reproduces a
run bit for bit (single-threaded numpy and the seeded simulator).

A regime-gated policy (:class:`GatedShape`, ``--gate-experts A.npz,B.npz``)
combines two trained linear policies with a linear gate,
``where(gate(obs) > 0, B(obs), A(obs))``; ``--gate-train gate`` searches
only the gate, ``all`` fine-tunes gate and experts together.

Writes ``config.json``, ``train.csv`` (one row per generation), ``eval.csv``
(the final mean policy on held-out seeds), ``policy.npz``, ``policy.onnx``
(output ``logits``; metadata ``algorithm`` = ``cem-linear``, ``cem-mlp``,
``cem-residual-mlp`` or ``cem-gated-linear``)
and ``wall_time_s.txt``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .env import Connection, summary_dict
from .onnx_export import OPSET, config_hash, metadata, run_onnx, save
from .scenegen import generate
from .train import WHOLE_RUN

#: The action space of the shipped policy: hold, fine steps, a fast step up,
#: and jumps to the queueing estimate with several margins.
DEFAULT_ACTIONS = ("hold,delta:-1,delta:+1,delta:+4,estimate:x0.9,estimate:x1,estimate:x1.1,"
                   "estimate:x1.2,estimate:x1.35,estimate:x1.6,estimate:x2")
DEFAULT_TRAIN = "steady,ramp,diurnal,bursty,heavy-tail"
DEFAULT_HELD_OUT = "paper-4phase,spike,cold-start,ce-capped"
_ids = itertools.count()


def _views(theta: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """Views of the flat ``theta`` as consecutive arrays of ``shapes``."""
    size = sum(int(np.prod(s)) for s in shapes)
    if theta.shape != (size,):
        raise ValueError(f"expected {size} parameters, got shape {theta.shape}")
    out, i = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(theta[i:i + n].reshape(s))
        i += n
    return out


@dataclass(frozen=True)
class PolicyShape:
    """Shape of the parameter vector.

    ``hidden == 0`` is a linear scorer ``obs @ W + b``; ``hidden > 0`` a tanh
    MLP ``tanh(obs @ W1 + b1) @ W2 + b2``; ``residual`` adds the MLP's
    hidden layer to a linear scorer, ``obs @ W + b + tanh(obs @ W1 + b1) @
    W2``, so it contains the linear policies (``W2 = 0``) and can be warm
    started from one (:meth:`embed`).
    """

    obs_dim: int
    n_actions: int
    hidden: int = 0
    residual: bool = False

    def _shapes(self) -> list[tuple[int, ...]]:
        d, a, h = self.obs_dim, self.n_actions, self.hidden
        if h == 0:
            return [(d, a), (a,)]
        if self.residual:
            return [(d, a), (a,), (d, h), (h,), (h, a)]
        return [(d, h), (h,), (h, a), (a,)]

    @property
    def size(self) -> int:
        """Number of parameters."""
        return sum(int(np.prod(s)) for s in self._shapes())

    @property
    def bias_offset(self) -> int:
        """Index of the first output bias in the parameter vector."""
        d, a = self.obs_dim, self.n_actions
        return d * a if (self.hidden == 0 or self.residual) else self.size - a

    def unpack(self, theta: np.ndarray) -> list[np.ndarray]:
        """Views of ``theta``: ``[W, b]`` (linear), ``[W1, b1, W2, b2]`` (MLP) or
        ``[W, b, W1, b1, W2]`` (residual)."""
        return _views(theta, self._shapes())

    def widen(self, theta: np.ndarray, obs_dim: int) -> np.ndarray:
        """Parameters of this shape computing the same policy as ``theta`` of the
        same shape over the first ``obs_dim`` features: the weights of the
        extra features are zero (a warm start for a longer observation layout
        that extends a shorter one, e.g. v2 = v1 + history)."""
        narrow = PolicyShape(obs_dim, self.n_actions, self.hidden, self.residual)
        if obs_dim > self.obs_dim or theta.shape != (narrow.size,):
            raise ValueError(f"widen needs {narrow.size} parameters over <= {self.obs_dim} "
                             "features")
        parts = narrow.unpack(theta)
        inputs = {0} if self.hidden == 0 or not self.residual else {0, 2}
        out = [np.vstack([p, np.zeros((self.obs_dim - obs_dim, p.shape[1]))]) if i in inputs
               else p for i, p in enumerate(parts)]
        return np.concatenate([p.ravel() for p in out])

    def input_mask(self, features: Sequence[int]) -> np.ndarray:
        """1 for every parameter, 0 for the input weights of ``features`` (a
        policy that must not read them keeps them at 0)."""
        mask = [np.ones(s) for s in self._shapes()]
        for i in ({0} if self.hidden == 0 or not self.residual else {0, 2}):
            mask[i][list(features), :] = 0.0
        return np.concatenate([m.ravel() for m in mask])

    def embed(self, linear_theta: np.ndarray) -> np.ndarray:
        """Parameters of this (residual) shape computing the given linear policy."""
        lin = (self.obs_dim + 1) * self.n_actions
        if not self.residual or linear_theta.shape != (lin,):
            raise ValueError(f"embed needs a residual shape and {lin} linear parameters")
        return np.concatenate([linear_theta, np.zeros(self.size - lin)])

    def logits(self, theta: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """Action scores ``[N, n_actions]`` for observations ``[N, obs_dim]``."""
        p = self.unpack(theta)
        x = np.asarray(obs, dtype=np.float64)
        if self.hidden == 0:
            return x @ p[0] + p[1]
        if self.residual:
            return x @ p[0] + p[1] + np.tanh(x @ p[2] + p[3]) @ p[4]
        return np.tanh(x @ p[0] + p[1]) @ p[2] + p[3]

    @property
    def algorithm(self) -> str:
        """The ONNX metadata ``algorithm`` of this shape."""
        if self.hidden == 0:
            return "cem-linear"
        return "cem-residual-mlp" if self.residual else "cem-mlp"


#: The score a gated policy gives the actions its ``A`` expert does not have
#: (never the argmax while the expert speaks).
GATE_FILL = -1.0e4


@dataclass(frozen=True)
class GatedShape:
    """A regime-gated pair of linear experts (``--gate-experts``).

    ``logits = where(obs @ g + g0 > 0, obs @ WB + bB, obs @ WA + bA)`` over
    the union action space (``n_actions``, the meanings of ``--actions``).
    Expert ``A`` is a linear scorer over the first ``a_dim`` features and the
    actions ``a_cols`` of the union (e.g. the shipped v1 policy: 17 features,
    11 actions): its weights for the other features are 0 and the other
    actions score :data:`GATE_FILL`, and :meth:`structure_mask` keeps them
    so. Expert ``B`` reads the whole observation over every action. The gate
    is linear over the whole observation (``gate_features`` restricts it).
    Parameter order: ``[g, g0, WA, bA, WB, bB]``.
    """

    obs_dim: int
    n_actions: int
    a_dim: int
    a_cols: tuple[int, ...]
    hidden: int = 0
    residual: bool = False

    def _shapes(self) -> list[tuple[int, ...]]:
        d, a = self.obs_dim, self.n_actions
        return [(d,), (1,), (d, a), (a,), (d, a), (a,)]

    @property
    def size(self) -> int:
        """Number of parameters (structural zeros included)."""
        return sum(int(np.prod(s)) for s in self._shapes())

    @property
    def gate_size(self) -> int:
        """Number of gate parameters (they come first)."""
        return self.obs_dim + 1

    def unpack(self, theta: np.ndarray) -> list[np.ndarray]:
        """Views ``[g, g0, WA, bA, WB, bB]`` of ``theta``."""
        return _views(theta, self._shapes())

    def compose(self, theta_a: np.ndarray, theta_b: np.ndarray,
                gate_bias: float = -0.1) -> np.ndarray:
        """Parameters from a linear ``A`` (``a_dim`` features, ``len(a_cols)``
        actions) and a linear ``B`` (whole observation, every action), with
        the gate's weights 0 and its bias ``gate_bias`` (negative: the
        composed policy is ``A`` everywhere)."""
        wa, ba = PolicyShape(self.a_dim, len(self.a_cols)).unpack(
            np.asarray(theta_a, dtype=np.float64))
        wb, bb = PolicyShape(self.obs_dim, self.n_actions).unpack(
            np.asarray(theta_b, dtype=np.float64))
        full_wa = np.zeros((self.obs_dim, self.n_actions))
        full_ba = np.full(self.n_actions, GATE_FILL)
        full_wa[:self.a_dim, list(self.a_cols)] = wa
        full_ba[list(self.a_cols)] = ba
        return np.concatenate([np.zeros(self.obs_dim), [gate_bias], full_wa.ravel(), full_ba,
                               wb.ravel(), bb])

    def structure_mask(self, train: str = "all",
                       gate_features: Sequence[int] | None = None) -> np.ndarray:
        """1 for the parameters the search may move: ``train`` = ``gate`` (the
        experts stay as given), ``heads`` (the gate stays) or ``all``; never
        ``A``'s structural zeros and fills, nor gate weights outside
        ``gate_features`` (``None``: every feature)."""
        if train not in ("gate", "heads", "all"):
            raise ValueError(f"train must be gate, heads or all, got {train!r}")
        g = np.ones(self.obs_dim) if gate_features is None else np.zeros(self.obs_dim)
        if gate_features is not None:
            g[list(gate_features)] = 1.0
        wa = np.zeros((self.obs_dim, self.n_actions))
        wa[:self.a_dim, list(self.a_cols)] = 1.0
        ba = np.zeros(self.n_actions)
        ba[list(self.a_cols)] = 1.0
        on_gate = 1.0 if train in ("gate", "all") else 0.0
        on_heads = 1.0 if train in ("heads", "all") else 0.0
        return np.concatenate([on_gate * g, [on_gate], on_heads * wa.ravel(), on_heads * ba,
                               np.full(self.obs_dim * self.n_actions, on_heads),
                               np.full(self.n_actions, on_heads)])

    def input_mask(self, features: Sequence[int]) -> np.ndarray:
        """1 for every parameter, 0 for the weights (gate and both experts) of
        ``features``."""
        p = [np.ones(s) for s in self._shapes()]
        for i in (0, 2, 4):
            p[i][list(features)] = 0.0
        return np.concatenate([m.ravel() for m in p])

    def gate(self, theta: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """The gate's value per observation (``> 0``: expert ``B``)."""
        g, g0 = self.unpack(theta)[:2]
        return np.asarray(obs, dtype=np.float64) @ g + g0[0]

    def logits(self, theta: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """Action scores ``[N, n_actions]`` for observations ``[N, obs_dim]``."""
        g, g0, wa, ba, wb, bb = self.unpack(theta)
        x = np.asarray(obs, dtype=np.float64)
        on_b = (x @ g + g0[0]) > 0
        return np.where(on_b[:, None], x @ wb + bb, x @ wa + ba)

    @property
    def algorithm(self) -> str:
        """The ONNX metadata ``algorithm``."""
        return "cem-gated-linear"


def _policy_model(nodes: list, inits: list, name: str, obs_dim: int, n_actions: int):
    """The checked ONNX model of a policy graph: input ``obs`` ``[N, obs_dim]``,
    output ``logits`` ``[N, n_actions]``."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["N", obs_dim])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_actions])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="rustfarm_gym")
    model.ir_version = 8  # loadable by gateway-ext's ONNX Runtime
    onnx.checker.check_model(model)
    return model


def gated_graph(shape: GatedShape, theta: np.ndarray) -> onnx.ModelProto:
    """ONNX graph ``obs -> logits`` computing :meth:`GatedShape.logits` in float32
    (``MatMul``/``Add`` per expert and for the gate, ``Greater`` and ``Where``)."""
    g, g0, wa, ba, wb, bb = [a.astype(np.float32) for a in shape.unpack(theta)]
    inits = [numpy_helper.from_array(g.reshape(-1, 1), "G"),
             numpy_helper.from_array(g0, "g0"),
             numpy_helper.from_array(np.zeros(1, dtype=np.float32), "zero"),
             numpy_helper.from_array(wa, "WA"), numpy_helper.from_array(ba, "bA"),
             numpy_helper.from_array(wb, "WB"), numpy_helper.from_array(bb, "bB")]
    nodes = [helper.make_node("MatMul", ["obs", "G"], ["gx"]),
             helper.make_node("Add", ["gx", "g0"], ["gate"]),
             helper.make_node("Greater", ["gate", "zero"], ["on_b"]),
             helper.make_node("MatMul", ["obs", "WA"], ["xa"]),
             helper.make_node("Add", ["xa", "bA"], ["logits_a"]),
             helper.make_node("MatMul", ["obs", "WB"], ["xb"]),
             helper.make_node("Add", ["xb", "bB"], ["logits_b"]),
             helper.make_node("Where", ["on_b", "logits_b", "logits_a"], ["logits"])]
    return _policy_model(nodes, inits, "cem_gated_policy", shape.obs_dim, shape.n_actions)


def gated_start(a: argparse.Namespace, spec: Any) -> tuple[GatedShape, np.ndarray]:
    """The gated shape and initial mean of ``--gate-experts A.npz,B.npz`` (gate
    closed: ``A`` everywhere) or of ``--init-from`` a gated ``policy.npz``."""
    meanings = list(spec.action_meanings)
    a_actions = [m for m in a.gate_a_actions.split(",") if m]
    missing = [m for m in a_actions if m not in meanings]
    if missing:
        raise SystemExit(f"--gate-a-actions {missing} are not among --actions")
    cols = tuple(meanings.index(m) for m in a_actions)
    d = len(spec.observation_names)
    if a.gate_experts:
        paths = [p for p in a.gate_experts.split(",") if p]
        if len(paths) != 2:
            raise SystemExit("--gate-experts needs two policy.npz files: A,B")
        ta, tb = (np.asarray(np.load(p)["theta"], dtype=np.float64) for p in paths)
        a_dim = ta.shape[0] // len(cols) - 1
        if (a_dim + 1) * len(cols) != ta.shape[0] or not 0 < a_dim <= d:
            raise SystemExit(f"--gate-experts {paths[0]}: {ta.shape[0]} parameters is no linear "
                             f"policy over {len(cols)} actions and <= {d} features")
        shape = GatedShape(d, len(meanings), a_dim, cols)
        if tb.shape != (PolicyShape(d, len(meanings)).size,):
            raise SystemExit(f"--gate-experts {paths[1]}: {tb.shape[0]} parameters, expected "
                             f"a linear policy over {d} features and {len(meanings)} actions")
        return shape, shape.compose(ta, tb, a.gate_bias)
    z = np.load(a.init_from)
    theta = np.asarray(z["theta"], dtype=np.float64)
    shape = GatedShape(d, len(meanings), int(z["a_dim"]), cols)
    if theta.shape != (shape.size,):
        raise SystemExit(f"--init-from {a.init_from}: {theta.shape[0]} parameters, expected "
                         f"{shape.size} for a gated policy")
    return shape, theta


def extend_actions(theta: np.ndarray, obs_dim: int, old: Sequence[str], new: Sequence[str],
                   margin: float = 0.1) -> np.ndarray:
    """Linear parameters over the action space ``new`` computing the same greedy
    policy as ``theta`` (linear, ``obs_dim`` features) over ``old``.

    An action of ``old`` keeps its column. A new ``smoothed:xM``, ``peak:xM``,
    ``mpc:xM`` or ``drain:xM`` copies the column of ``estimate:xM`` with its bias lowered
    by ``margin``, so it starts just below the action it refines (never
    chosen at first, one small step of the search away); a ``drain:xM``
    without an ``estimate:xM`` copies the estimate with the nearest multiple
    above M (bias lowered by ``2 * margin``). Any other new action is
    refused: no bias keeps an unrelated action unchosen for every
    observation.
    """
    w_old = PolicyShape(obs_dim, len(old)).unpack(np.asarray(theta, dtype=np.float64))
    cols, bias = [], []
    est = {float(o.partition(":x")[2]): i for i, o in enumerate(old)
           if o.startswith("estimate:x")}
    for m in new:
        drop = 0.0
        if m in old:
            j = list(old).index(m)
        else:
            kind, _, mult = m.partition(":x")
            base = f"estimate:x{mult}"
            drop = margin
            if kind == "drain" and base not in old:
                above = [x for x in est if x >= float(mult)]
                if above:
                    base, drop = f"estimate:x{min(above):g}", 2 * margin
            if kind not in ("smoothed", "peak", "mpc", "drain") or base not in old:
                raise ValueError(f"cannot warm-start new action {m!r}: it needs {base!r} "
                                 "among the old actions")
            j = list(old).index(base)
        cols.append(w_old[0][:, j])
        bias.append(w_old[1][j] - drop)
    return np.concatenate([np.stack(cols, axis=1).ravel(), np.asarray(bias)])


def policy_graph(shape: PolicyShape | GatedShape, theta: np.ndarray) -> onnx.ModelProto:
    """ONNX graph ``obs -> logits`` computing :meth:`PolicyShape.logits` in float32
    (a :class:`GatedShape` goes to :func:`gated_graph`)."""
    if isinstance(shape, GatedShape):
        return gated_graph(shape, theta)
    p = [a.astype(np.float32) for a in shape.unpack(theta)]
    if shape.hidden == 0:
        names = ["W", "b"]
    elif shape.residual:
        names = ["W", "b", "W1", "b1", "W2"]
    else:
        names = ["W1", "b1", "W2", "b2"]
    inits = [numpy_helper.from_array(a, n) for a, n in zip(p, names, strict=True)]
    if shape.hidden == 0:
        nodes = [helper.make_node("MatMul", ["obs", "W"], ["xw"]),
                 helper.make_node("Add", ["xw", "b"], ["logits"])]
    elif shape.residual:
        nodes = [helper.make_node("MatMul", ["obs", "W"], ["xw"]),
                 helper.make_node("Add", ["xw", "b"], ["lin"]),
                 helper.make_node("MatMul", ["obs", "W1"], ["h_pre0"]),
                 helper.make_node("Add", ["h_pre0", "b1"], ["h_pre"]),
                 helper.make_node("Tanh", ["h_pre"], ["h"]),
                 helper.make_node("MatMul", ["h", "W2"], ["hw"]),
                 helper.make_node("Add", ["lin", "hw"], ["logits"])]
    else:
        nodes = [helper.make_node("MatMul", ["obs", "W1"], ["h_pre0"]),
                 helper.make_node("Add", ["h_pre0", "b1"], ["h_pre"]),
                 helper.make_node("Tanh", ["h_pre"], ["h"]),
                 helper.make_node("MatMul", ["h", "W2"], ["hw"]),
                 helper.make_node("Add", ["hw", "b2"], ["logits"])]
    return _policy_model(nodes, inits, "cem_policy", shape.obs_dim, shape.n_actions)


#: Service time of the reference farm (Gamma, mean 1.5 s, clipped).
GAMMA_SERVICE = """  dist:
    kind: gamma
    shape: 4.0
    scale: 0.375
  clip:
    min: 0.0465
    max: 2.8704"""


def lognormal_service(mean: float, sigma: float, clip_max: float = 60.0) -> str:
    """A heavy-tailed log-normal service time with the given mean (YAML body)."""
    mu = float(np.log(mean) - sigma * sigma / 2.0)
    return f"""  dist:
    kind: lognormal
    mu: {mu}
    sigma: {sigma}
  clip:
    min: 0.01
    max: {clip_max}"""


def _phases_yaml(name: str, phases: Sequence[str], base_rate: float, steps: int,
                 startup: tuple[float, float], initial: int,
                 service: str = GAMMA_SERVICE) -> str:
    body = "\n".join(phases)
    return f"""name: {name}
description: training-only shape (rustfarm_gym.cem), never evaluated on
seed: 0
arrivals:
  kind: phases
  process: poisson
  base_rate: {base_rate}
  phases:
{body}
service:
{service}
deadline:
  kind: factor
  factor: 2.0
  floor_s: 0.1
  cap_s: 30.0
platform:
  control_interval_s: 8.0
  episode_steps: {steps}
  min_replicas: 1
  max_replicas: 32
  initial_replicas: {initial}
  startup_delay:
    kind: uniform
    min: {startup[0]}
    max: {startup[1]}
  scale_down_delay:
    kind: uniform
    min: 2.0
    max: 3.0
  scale_api_latency_s: 0.0
  failure_rate_per_hour: 0.0
"""


def _const(d: float, level: float) -> str:
    return f"  - shape: constant\n    duration_s: {d}\n    level: {level}"


def _sine(d: float, lo: float, hi: float, period: float) -> str:
    return (f"  - shape: sine\n    duration_s: {d}\n    min: {lo}\n    max: {hi}\n"
            f"    period_s: {period}\n    offset: 0.0")


def training_scenarios() -> dict[str, str]:
    """Training-only scenarios (inline YAML), shapes absent from the public suite.

    Step changes up and down, a fast oscillation and a slow cold start with a
    step, so the policy sees sudden load changes without training on
    ``spike``, ``cold-start`` or ``paper-4phase``; the ``-lognormal`` shapes
    combine load changes with heavy-tailed (log-normal) service times, and
    ``train-from-one`` starts from a single replica under a rising load.
    (The server's domain randomisation then varies rates, service means and
    shapes and start-up delays per run.)
    """
    return {
        "train-steps": _phases_yaml(
            "train-steps", [_const(48.0, 0.4), _const(48.0, 1.6), _const(48.0, 0.8),
                            _const(48.0, 2.0), _const(48.0, 0.5)], 5.0, 30, (5.0, 9.0), 2),
        "train-wobble": _phases_yaml(
            "train-wobble", [_const(40.0, 1.0), _sine(200.0, 0.4, 1.8, 25.0)],
            5.0, 30, (5.0, 9.0), 4),
        "train-slow": _phases_yaml(
            "train-slow", [_const(64.0, 0.5), _const(96.0, 1.8), _const(80.0, 0.9)],
            5.0, 30, (18.0, 26.0), 2),
        "train-surge": _phases_yaml(
            "train-surge", [_const(80.0, 0.6), _const(24.0, 3.0), _const(136.0, 0.8)],
            5.0, 30, (5.0, 9.0), 3),
        "train-steps-lognormal": _phases_yaml(
            "train-steps-lognormal", [_const(64.0, 0.5), _const(80.0, 1.4), _const(96.0, 0.8)],
            5.0, 30, (5.0, 9.0), 4, lognormal_service(1.5, 1.3)),
        "train-surge-lognormal": _phases_yaml(
            "train-surge-lognormal", [_const(72.0, 0.8), _const(32.0, 2.2), _const(136.0, 1.0)],
            4.0, 30, (5.0, 9.0), 6, lognormal_service(1.2, 1.7)),
        "train-from-one": _phases_yaml(
            "train-from-one", [_const(40.0, 0.4), _const(56.0, 1.2), _sine(144.0, 0.5, 1.4, 20.0)],
            5.0, 30, (5.0, 9.0), 1),
    }


class RunBatch:
    """Many whole simulated runs stepped together with ``StepBatch``.

    ``run(policy_fns, episodes)`` plays every (candidate, episode) pair to the
    end of its run and returns the run summaries, ``[n_candidates][n_episodes]``.
    """

    def __init__(self, action_space: str, address: str | None = None,
                 farmctl: str | None = None, obs_version: int = 1) -> None:
        self._conn = Connection("sim", address, farmctl)
        self.client = self._conn.client
        self.spec = self.client.get_spec(action_space=action_space, obs_version=obs_version)
        self.action_space = action_space
        # Only asked for when not the default, so v1 requests stay as before.
        self._obs_opts = {} if obs_version == 1 else {"obs_version": str(obs_version)}
        self._tag = f"cem-{os.getpid()}-{next(_ids)}-{uuid.uuid4().hex[:8]}"

    def close(self) -> None:
        """Close the connection (and stop a server started for it)."""
        self._conn.close()

    def run(self, shape: PolicyShape | GatedShape, thetas: Sequence[np.ndarray],
            episodes: Sequence[tuple[str, int, dict[str, str]]]) -> list[list[dict[str, Any]]]:
        """Greedy whole runs; ``episodes`` are ``(scenario name or YAML, seed, options)``."""
        n_c, n_e = len(thetas), len(episodes)
        ids = [f"{self._tag}-{i}" for i in range(n_c * n_e)]
        obs = np.zeros((n_c * n_e, shape.obs_dim))
        for k, env_id in enumerate(ids):
            sc, seed, opts = episodes[k % n_e]
            yaml = sc if "\n" in sc else ""
            name = "" if yaml else sc
            rep = self.client.reset(env_id, seed, scenario=name, scenario_yaml=yaml,
                                    options={"action_space": self.action_space, **opts,
                                             **self._obs_opts})
            obs[k] = rep.observation
        out: list[list[dict[str, Any]]] = [[{} for _ in range(n_e)] for _ in range(n_c)]
        live = np.ones(n_c * n_e, dtype=bool)
        while live.any():
            idx = np.flatnonzero(live)
            acts = np.empty(len(idx), dtype=np.int64)
            owner = idx // n_e
            for c in np.unique(owner):
                m = owner == c
                acts[m] = shape.logits(thetas[c], obs[idx[m]]).argmax(1)
            replies = self.client.step_batch([ids[k] for k in idx], acts.tolist(),
                                             auto_reset=False)
            for k, r in zip(idx, replies, strict=True):
                obs[k] = r.observation
                if r.terminated or r.truncated:
                    live[k] = False
                    out[k // n_e][k % n_e] = summary_dict(r.info.summary)
        return out


def score(summary: dict[str, Any], *, cost: float, miss: float, target: float,
          max_replicas: float = 32.0, miss_cap: float | None = None,
          qos_cap: bool = False) -> float:
    """The per-run objective (see the module docs).

    ``qos_cap`` counts QoS only up to ``target`` (``min(qos, target)``): QoS
    above the target earns nothing, so only the replica cost moves the
    policy there and it aims at the target instead of above it.

    ``miss_cap`` bounds the shortfall the ``miss`` penalty counts: a run far
    below the target (one no policy can rescue, e.g. a randomised load
    beyond the farm's capacity) then pulls the policy towards more replicas
    no harder than a run just below it, so a hard penalty does not drive
    every candidate to the maximum.
    """
    q = float(summary["qos"])
    short = max(0.0, target - q)
    if miss_cap is not None:
        short = min(short, miss_cap)
    if qos_cap:
        q = min(q, target)
    return q - cost * float(summary["mean_replicas"]) / max_replicas - miss * short


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    ap = argparse.ArgumentParser(prog="python -m rustfarm_gym.cem", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default=DEFAULT_TRAIN,
                    help="built-in training scenarios (comma list)")
    ap.add_argument("--no-extra", action="store_true",
                    help="skip the training-only shapes of training_scenarios()")
    ap.add_argument("--generated", type=float, default=0.0,
                    help="share of the runs on a freshly generated scenario "
                         "(rustfarm_gym.scenegen: a new load, service, deadline rule and "
                         "platform per run); the rest draw from the named pool")
    ap.add_argument("--eval-scenarios", default=DEFAULT_HELD_OUT,
                    help="held-out scenarios for eval.csv (never trained on)")
    ap.add_argument("--actions", default=DEFAULT_ACTIONS, help="action meanings (comma list)")
    ap.add_argument("--obs-version", type=int, default=1,
                    help="observation layout (2 = v1 plus history features); --init-from "
                         "may hold a policy over fewer features (extra weights start at 0)")
    ap.add_argument("--interval", default="",
                    help="decision intervals a run draws from, seconds (comma list; default: "
                         "each scenario's), as `train --interval`")
    ap.add_argument("--window", type=float, default=0.0,
                    help="sliding window of the signals, seconds (0: the interval)")
    ap.add_argument("--events", default="",
                    help="early decisions on a backlog jump: on, or share=X,jump=N,gap=S "
                         "(default off), as `farmctl sim --events`")
    ap.add_argument("--shed-expired", action="store_true",
                    help="runs drop tasks already past their deadline unstarted "
                         "(`farmctl sim --shed-expired`, the runtime's FARM_SHED_EXPIRED)")
    ap.add_argument("--mask-features", default="",
                    help="comma list of observation feature names the policy must not use "
                         "(their input weights stay 0)")
    ap.add_argument("--hidden", type=int, default=0, help="MLP hidden units (0 = linear)")
    ap.add_argument("--residual", action="store_true",
                    help="with --hidden: add the hidden layer to a linear scorer (warm-startable "
                         "from a linear policy.npz with --init-from)")
    ap.add_argument("--generations", type=int, default=40)
    ap.add_argument("--pop", type=int, default=32)
    ap.add_argument("--episodes", type=int, default=16, help="runs per candidate per generation")
    ap.add_argument("--elite", type=float, default=0.2, help="elite fraction")
    ap.add_argument("--init-std", type=float, default=0.3)
    ap.add_argument("--init-action", default="estimate:x1.2",
                    help="warm start: the mean policy starts by always choosing this action "
                         "(the queueing estimate with a margin); '' starts from zero")
    ap.add_argument("--extra-std", type=float, default=0.2,
                    help="noise floor added to the std, decaying linearly to 0")
    ap.add_argument("--smoothing", type=float, default=0.7, help="weight of the new fit")
    ap.add_argument("--cost", type=float, default=0.8, help="weight of mean_replicas/max")
    ap.add_argument("--miss", type=float, default=0.5, help="extra weight of QoS below --target")
    ap.add_argument("--miss-cap", type=float, default=None,
                    help="largest shortfall below --target the miss penalty counts (default: all)")
    ap.add_argument("--init-from", default=None,
                    help="warm start: policy.npz of an earlier run with the same shape (its "
                         "theta becomes the initial mean)")
    ap.add_argument("--init-actions", default=None,
                    help="the action meanings of --init-from when they differ from --actions "
                         "(linear only; see extend_actions)")
    ap.add_argument("--gate-experts", default=None,
                    help="A.npz,B.npz: a regime-gated policy (GatedShape) from two linear "
                         "policy.npz files: A over --gate-a-actions (and the first features), "
                         "B over --actions and the whole observation; the gate starts closed "
                         "(A everywhere). With --init-from instead: a gated policy.npz")
    ap.add_argument("--gate-a-actions", default=None,
                    help="action meanings of the gated policy's expert A (a subset of "
                         "--actions; default: the shipped policy's)")
    ap.add_argument("--gate-train", choices=["gate", "heads", "all"], default="all",
                    help="gated policy: which parameters the search moves")
    ap.add_argument("--gate-std", type=float, default=None,
                    help="gated policy: initial std of the gate's parameters (default --init-std)")
    ap.add_argument("--gate-bias", type=float, default=-0.1,
                    help="gated policy from --gate-experts: the gate's initial bias")
    ap.add_argument("--gate-features", default="",
                    help="gated policy: comma list of the features the gate reads (default all)")
    ap.add_argument("--rate", default="0.6,1.3",
                    help="randomize.rate range (arrival-rate factor); the server's default "
                         "reaches loads beyond the farm's capacity")
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--qos-cap", action="store_true",
                    help="count QoS only up to --target (no reward for QoS above it)")
    ap.add_argument("--episode-end", choices=["whole", "scenario"], default="whole",
                    help="training runs end when their work is done (whole, as `farmctl sim "
                         "compare` measures) or after the scenario's episode_steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-episodes", type=int, default=64,
                    help="fixed validation runs (training distribution, own seeds) on which "
                         "the mean policy is scored every --val-every generations; the best "
                         "one is exported (0: export the final mean)")
    ap.add_argument("--val-every", type=int, default=10)
    ap.add_argument("--eval-seeds", type=int, default=10)
    ap.add_argument("--eval-seed", type=int, default=1_000_000)
    ap.add_argument("--out", default="runs/cem")
    ap.add_argument("--address", default=None)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    a = parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {k: v for k, v in vars(a).items() if k not in ("out", "address")}
    cfg["algorithm"] = "cem"
    if not a.residual:
        # Added later: left out when off, so earlier runs' config hashes still reproduce.
        del cfg["residual"]
    if a.obs_version == 1:
        del cfg["obs_version"]  # likewise
    if not a.mask_features:
        del cfg["mask_features"]  # likewise
    if not a.interval:
        del cfg["interval"]  # likewise
    if not a.window:
        del cfg["window"]  # likewise
    if not a.events:
        del cfg["events"]  # likewise
    if not a.shed_expired:
        del cfg["shed_expired"]  # likewise
    if not a.init_actions:
        del cfg["init_actions"]  # likewise
    if not a.qos_cap:
        del cfg["qos_cap"]  # likewise
    if not a.generated:
        del cfg["generated"]  # likewise
    if not 0.0 <= a.generated <= 1.0:
        raise SystemExit(f"--generated {a.generated}: expected a share in [0, 1]")
    gated = bool(a.gate_experts or a.gate_a_actions)
    if gated:
        a.gate_a_actions = a.gate_a_actions or DEFAULT_ACTIONS
        cfg["gate_a_actions"] = a.gate_a_actions
    else:
        for k in ("gate_experts", "gate_a_actions", "gate_train", "gate_std", "gate_bias",
                  "gate_features"):
            del cfg[k]  # likewise
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    rng = np.random.default_rng(a.seed)
    pool: list[str] = [s for s in a.scenarios.split(",") if s]
    if not a.no_extra:
        pool += list(training_scenarios().values())
    # Whole runs (the run ends when its work is done), as `farmctl sim compare` measures.
    rand = {"randomize": "true", "randomize.rate": a.rate,
            **(WHOLE_RUN if a.episode_end == "whole" else {}),
            **({"interval": a.interval} if a.interval else {}),
            **({"window": str(a.window)} if a.window else {}),
            **({"events": a.events} if a.events else {}),
            **({"shed_expired": "true"} if a.shed_expired else {})}
    t0 = time.perf_counter()
    batch = RunBatch(a.actions, a.address, obs_version=a.obs_version)
    try:
        spec = batch.spec
        shape: PolicyShape | GatedShape = PolicyShape(
            len(spec.observation_names), len(spec.action_meanings), a.hidden,
            a.residual and a.hidden > 0)
        mu = np.zeros(shape.size)
        if gated:
            shape, mu = gated_start(a, spec)
        elif a.init_from:
            mu = np.asarray(np.load(a.init_from)["theta"], dtype=np.float64)
            if a.init_actions:
                old = [m for m in a.init_actions.split(",") if m]
                d_old = mu.shape[0] // len(old) - 1
                mu = extend_actions(mu, d_old, old, list(spec.action_meanings))
            for d in range(1, shape.obs_dim):
                # A policy over an older, shorter layout: the new features start unused.
                if mu.shape == (PolicyShape(d, shape.n_actions, shape.hidden,
                                            shape.residual).size,):
                    mu = shape.widen(mu, d)
                    break
            if shape.residual and mu.shape == ((shape.obs_dim + 1) * shape.n_actions,):
                mu = shape.embed(mu)  # a linear policy: start from it, hidden layer off
            if mu.shape != (shape.size,):
                raise SystemExit(f"--init-from {a.init_from}: {mu.shape[0]} parameters, "
                                 f"expected {shape.size}")
        elif a.init_action:
            mu[shape.bias_offset + list(spec.action_meanings).index(a.init_action)] = 1.0
        free = shape.input_mask([spec.observation_names.index(n)
                                 for n in a.mask_features.split(",") if n])
        mu = mu * free
        std = np.full(shape.size, a.init_std)
        if isinstance(shape, GatedShape):
            # Only the noise is masked: the frozen parts keep their values.
            gate_feats = ([spec.observation_names.index(n) for n in a.gate_features.split(",")
                           if n] if a.gate_features else None)
            free = free * shape.structure_mask(a.gate_train, gate_feats)
            if a.gate_std is not None:
                std[:shape.gate_size] = a.gate_std
            std = std * free
        n_elite = max(2, round(a.elite * a.pop))
        log = open(out / "train.csv", "w", newline="")  # noqa: SIM115
        w = csv.writer(log)
        w.writerow(["generation", "best", "elite_mean", "mean_policy", "mean_qos",
                    "mean_replicas", "std_mean", "wall_s"])
        best_theta, best_val, best_gen = mu.copy(), -np.inf, -1

        def obj(r: dict[str, Any]) -> float:
            return score(r, cost=a.cost, miss=a.miss, target=a.target, miss_cap=a.miss_cap,
                         qos_cap=a.qos_cap)

        def draw(r: np.random.Generator, n: int) -> list[tuple[str, int, dict[str, str]]]:
            return [(generate(int(r.integers(0, 2**62))) if a.generated and r.random() < a.generated
                     else pool[int(r.integers(len(pool)))], int(r.integers(0, 2**62)), rand)
                    for _ in range(n)]

        val_eps = draw(np.random.default_rng([a.seed, 1]), a.val_episodes)
        for g in range(a.generations):
            eps = draw(rng, a.episodes)
            extra = a.extra_std * max(0.0, 1.0 - g / max(1, a.generations - 1))
            cands = [mu + free * (std + extra) * rng.standard_normal(shape.size)
                     for _ in range(a.pop - 1)] + [mu.copy()]
            runs = batch.run(shape, cands, eps)
            sc = np.array([[obj(r) for r in row]
                           for row in runs]).mean(1)
            order = np.argsort(-sc)
            elite = np.stack([cands[i] for i in order[:n_elite]])
            new_mu = a.smoothing * elite.mean(0) + (1 - a.smoothing) * mu
            # A gated policy's frozen parameters stay bit for bit (the refit of
            # equal values is not exact in floating point).
            mu = np.where(free > 0, new_mu, mu) if isinstance(shape, GatedShape) else new_mu
            std = a.smoothing * elite.std(0) + (1 - a.smoothing) * std
            mean_runs = runs[-1]
            last = g == a.generations - 1
            if val_eps and ((g + 1) % a.val_every == 0 or last):
                val = float(np.mean([obj(r)
                                     for r in batch.run(shape, [mu], val_eps)[0]]))
                print(f"validation gen {g}: {val:.4f}", flush=True)
                if val > best_val:
                    best_val, best_theta, best_gen = val, mu.copy(), g
            row = [g, f"{sc.max():.4f}", f"{sc[order[:n_elite]].mean():.4f}", f"{sc[-1]:.4f}",
                   f"{np.mean([r['qos'] for r in mean_runs]):.4f}",
                   f"{np.mean([r['mean_replicas'] for r in mean_runs]):.2f}",
                   f"{std.mean():.4f}", f"{time.perf_counter() - t0:.1f}"]
            w.writerow(row)
            log.flush()
            print("gen " + " ".join(str(x) for x in row), flush=True)
        log.close()
        theta = best_theta if val_eps else mu
        print(f"exporting the mean policy of generation {best_gen if val_eps else g}", flush=True)
        wall = time.perf_counter() - t0
        # Held-out evaluation: whole runs without randomisation, seeds never trained on.
        seeds = list(range(a.eval_seed, a.eval_seed + a.eval_seeds))
        held = [s for s in a.eval_scenarios.split(",") if s]
        names = ([s for s in a.scenarios.split(",") if s] + held) if seeds else []
        rows = []
        for name in names:
            res = batch.run(shape, [theta], [(name, s, WHOLE_RUN) for s in seeds])[0]
            for s, r in zip(seeds, res, strict=True):
                rows.append({"scenario": name, "held_out": name in held, "seed": s, **r})
            print(f"eval {name}: qos {np.mean([r['qos'] for r in res]) * 100:.2f}% "
                  f"mean replicas {np.mean([r['mean_replicas'] for r in res]):.2f}", flush=True)
    finally:
        batch.close()
    if rows:
        with open(out / "eval.csv", "w", newline="") as fh:
            dw = csv.DictWriter(fh, fieldnames=list(rows[0]))
            dw.writeheader()
            dw.writerows(rows)
    extra_npz = ({"a_dim": shape.a_dim, "gate_a_actions": a.gate_a_actions}
                 if isinstance(shape, GatedShape) else {})
    np.savez(out / "policy.npz", theta=theta, final_mean=mu, hidden=a.hidden,
             residual=shape.residual, **extra_npz)
    meta = metadata(spec, output="logits", algorithm=shape.algorithm, config=cfg)
    path = save(policy_graph(shape, theta), out / "policy.onnx", meta)
    (out / "wall_time_s.txt").write_text(f"{wall:.1f}\n")
    check = np.random.default_rng(a.seed).uniform(
        np.asarray(spec.observation_low), np.asarray(spec.observation_high),
        size=(1024, shape.obs_dim)).astype(np.float32)
    ref, got = shape.logits(theta, check), run_onnx(path, check)
    agree = float((ref.argmax(1) == got.argmax(1)).mean())
    print(f"trained cem ({shape.size} parameters) in {wall:.1f} s; exported {path} "
          f"({config_hash(cfg)}); ONNX vs trainer greedy agreement {agree:.4f}")
    return 0 if agree >= 0.999 else 1


if __name__ == "__main__":
    sys.exit(main())
