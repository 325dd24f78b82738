"""ONNX export of stable-baselines3 models (``[train]`` extra only).

DQN exports its online Q-network (output ``q``); PPO exports the action
logits of its policy network (output ``logits``). Returns the same triple
as the SARSA trainer: a numpy policy function for the agreement check, the
ONNX model, and ``None`` for the spec (the caller has it).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import onnx


def export_sb3(model: Any, algo: str, obs_dim: int) -> tuple[Any, onnx.ModelProto, Any]:
    """Export an SB3 DQN or PPO model; ``(policy_fn, onnx_model, spec)``."""
    import torch

    policy = model.policy.eval()

    class Head(torch.nn.Module):
        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            if algo == "dqn":
                return policy.q_net(obs)
            dist = policy.get_distribution(obs)
            return dist.distribution.logits

    head = Head()
    buf = io.BytesIO()
    dummy = torch.zeros(1, obs_dim, dtype=torch.float32)
    name = "q" if algo == "dqn" else "logits"
    torch.onnx.export(head, dummy, buf, input_names=["obs"], output_names=[name],
                      dynamic_axes={"obs": {0: "N"}, name: {0: "N"}}, opset_version=17)
    onnx_model = onnx.load_from_string(buf.getvalue())

    def fn(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return head(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    return fn, onnx_model, model.get_env().envs[0].unwrapped.farm_spec
