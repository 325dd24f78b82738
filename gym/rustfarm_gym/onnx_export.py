"""ONNX export with the metadata gateway-ext checks.

Every exported policy has one input ``obs`` (float32 ``[N, OBS_DIM]``) and
one output, ``q`` (action values, greedy = argmax) or ``logits``
(policy-gradient models, greedy = argmax), float32 ``[N, n_actions]``. The
``metadata_props`` keys are listed in :data:`METADATA_KEYS` and in
gym/README.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .client import Spec
from .tiles import TileCoder

#: Keys of ``metadata_props`` written on every exported model.
METADATA_KEYS = (
    "obs_version",     # decimal, crates/model OBS_VERSION the policy was trained on
    "obs_dim",         # decimal, length of the observation vector
    "obs_names",       # JSON array of feature names, in order
    "obs_low",         # JSON array of lower bounds
    "obs_high",        # JSON array of upper bounds
    "normalisation",   # "identity": the farm-model observation is fed as-is
    "action_meanings", # JSON array, e.g. ["delta:-1","delta:0","delta:+1"]
    "output",          # "q" or "logits": the output's name and meaning
    "algorithm",       # "sarsa-lambda", "dqn", "ppo"
    "config_hash",     # "sha256:<hex>" of the canonical training config JSON
    "config",          # the training config itself (JSON)
)
OPSET = 17


def config_hash(config: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the config as canonical JSON (sorted keys)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def metadata(spec: Spec, *, output: str, algorithm: str, config: Mapping[str, Any],
             action_meanings: Sequence[str] | None = None) -> dict[str, str]:
    """The metadata dict for a policy trained against ``spec``."""
    if output not in ("q", "logits"):
        raise ValueError(f"output must be 'q' or 'logits', got {output!r}")
    meanings = list(action_meanings or spec.action_meanings)
    dim = len(spec.observation_names)
    # The namespaced keys are the ones gateway-ext validates at load
    # (crates/policy/src/onnx.rs); the plain keys describe training.
    gateway = {
        "rust_farm.format": "1",
        "rust_farm.obs_version": str(spec.obs_version),
        "rust_farm.obs_names": json.dumps(list(spec.observation_names)),
        "rust_farm.normalisation": json.dumps({"kind": "none"}),
        "rust_farm.action_meanings": json.dumps(meanings),
        "rust_farm.input_name": "obs",
        "rust_farm.input_shape": json.dumps([-1, dim]),
        "rust_farm.output_name": output,
        "rust_farm.output_shape": json.dumps([-1, len(meanings)]),
        "rust_farm.output_kind": "q_values" if output == "q" else "logits",
    }
    return gateway | {
        "obs_version": str(spec.obs_version),
        "obs_dim": str(dim),
        "obs_names": json.dumps(list(spec.observation_names)),
        "obs_low": json.dumps([float(v) for v in spec.observation_low]),
        "obs_high": json.dumps([float(v) for v in spec.observation_high]),
        "normalisation": "identity",
        "action_meanings": json.dumps(meanings),
        "output": output,
        "algorithm": algorithm,
        "config_hash": config_hash(config),
        "config": json.dumps(dict(config), sort_keys=True, default=str),
    }


def set_metadata(model: onnx.ModelProto, meta: Mapping[str, str]) -> None:
    """Replace the model's ``metadata_props`` with ``meta``."""
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file."""
    m = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def tile_coder_graph(coder: TileCoder, weights: np.ndarray) -> onnx.ModelProto:
    """An ONNX model computing ``q = sum of weights[active tiles]`` for ``obs``."""
    n_actions = int(weights.shape[1])
    dim = int(coder.low.shape[0])
    f32 = np.float32
    inits = [
        numpy_helper.from_array(coder.low.astype(f32), "low"),
        numpy_helper.from_array(coder.inv_span.astype(f32), "inv_span"),
        numpy_helper.from_array(coder.comp_dim.astype(np.int64), "comp_dim"),
        numpy_helper.from_array(np.array(coder.bins, dtype=f32), "bins"),
        numpy_helper.from_array(coder.comp_offset.astype(f32), "comp_offset"),
        numpy_helper.from_array(np.array(0, dtype=f32), "zero"),
        numpy_helper.from_array(np.array(coder.bins, dtype=f32), "top"),
        numpy_helper.from_array(coder.comp_stride.astype(f32), "comp_stride"),
        numpy_helper.from_array(coder.assign.astype(f32), "assign"),
        numpy_helper.from_array(coder.owner_base.astype(f32), "owner_base"),
        numpy_helper.from_array(weights.astype(f32), "weights"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "tile_axis"),
    ]
    nodes = [
        helper.make_node("Sub", ["obs", "low"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "inv_span"], ["unit"]),
        helper.make_node("Gather", ["unit", "comp_dim"], ["sel"], axis=1),
        helper.make_node("Mul", ["sel", "bins"], ["scaled"]),
        helper.make_node("Add", ["scaled", "comp_offset"], ["shifted_cells"]),
        helper.make_node("Floor", ["shifted_cells"], ["cell"]),
        helper.make_node("Clip", ["cell", "zero", "top"], ["cell_clipped"]),
        helper.make_node("Mul", ["cell_clipped", "comp_stride"], ["strided"]),
        helper.make_node("MatMul", ["strided", "assign"], ["local_index"]),
        helper.make_node("Add", ["local_index", "owner_base"], ["index_f"]),
        helper.make_node("Cast", ["index_f"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["weights", "index"], ["tile_q"], axis=0),
        helper.make_node("ReduceSum", ["tile_q", "tile_axis"], ["q"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "sarsa_tile_coding",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["N", dim])],
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, ["N", n_actions])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="rustfarm_gym")
    # Stay loadable by older ONNX Runtime builds (gateway-ext's ort).
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: str | Path, meta: Mapping[str, str]) -> Path:
    """Attach metadata, check, and write the model."""
    missing = [k for k in METADATA_KEYS if k not in meta]
    if missing:
        raise ValueError(f"metadata is missing {missing}")
    set_metadata(model, meta)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def run_onnx(path: str | Path, obs: np.ndarray) -> np.ndarray:
    """Run an exported policy in ONNX Runtime; its output ``[N, n_actions]``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"obs": np.asarray(obs, dtype=np.float32)})
    return out
