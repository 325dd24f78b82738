"""Gymnasium layer of rust-farm: environments over the FarmControl gRPC
contract (simulated by ``farmctl sim serve`` or live through gateway-ext),
SARSA(lambda) training with tile coding, and ONNX export with metadata.

>>> import gymnasium as gym
>>> import rustfarm_gym  # registers the ids below
>>> env = gym.make("RustFarm-v0")  # doctest: +SKIP
>>> obs, info = env.reset(seed=1)  # doctest: +SKIP

Registered ids: ``RustFarm-v0`` (paper-4phase, default action space),
``RustFarmPaper-v0`` (paper-4phase, the paper's {-1, 0, +1} actions),
``RustFarmRandomized-v0`` (the public suite with domain randomisation),
``RustFarmLive-v0`` (live backend; pass ``address=`` and ``farm=``).
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from .client import OBS_VERSION, FarmClient, Spec, native_available, resolve_transport
from .env import FarmEnv
from .errors import (
    FarmError,
    FarmRpcError,
    InvalidArgumentError,
    ServerStartError,
    ServerUnreachableError,
    SpecMismatchError,
    TransportUnavailableError,
)
from .server import SimServer, find_farmctl
from .vector import FarmVectorEnv

__all__ = [
    "OBS_VERSION",
    "FarmClient",
    "FarmEnv",
    "FarmError",
    "FarmRpcError",
    "FarmVectorEnv",
    "InvalidArgumentError",
    "ServerStartError",
    "ServerUnreachableError",
    "SimServer",
    "Spec",
    "SpecMismatchError",
    "TransportUnavailableError",
    "find_farmctl",
    "native_available",
    "resolve_transport",
]

#: Built-in scenarios of the public suite used for randomised training.
TRAIN_SUITE = "paper-4phase,steady,ramp,spike,diurnal,bursty,heavy-tail,cold-start"


def _register() -> None:
    ids = {
        "RustFarm-v0": {"scenario": "paper-4phase"},
        "RustFarmPaper-v0": {"scenario": "paper-4phase", "action_space": "paper"},
        "RustFarmRandomized-v0": {
            "scenario": "paper-4phase",
            "server_options": {"randomize": "true", "scenarios": TRAIN_SUITE},
        },
        "RustFarmLive-v0": {"backend": "live"},
    }
    for env_id, kwargs in ids.items():
        if env_id not in registry:
            register(id=env_id, entry_point="rustfarm_gym.env:FarmEnv", kwargs=kwargs,
                     vector_entry_point="rustfarm_gym.vector:FarmVectorEnv"
                     if env_id != "RustFarmLive-v0" else None)


_register()
