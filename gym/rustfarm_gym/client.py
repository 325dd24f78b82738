"""A thin, typed client of the FarmControl gRPC service.

Every gRPC failure becomes a :class:`~rustfarm_gym.errors.FarmError`
subclass carrying the server's message, so callers never see raw
``grpc.RpcError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import grpc

from ._proto import control_pb2 as pb
from ._proto import control_pb2_grpc as pb_grpc
from .errors import FarmRpcError, InvalidArgumentError, ServerUnreachableError, SpecMismatchError

#: Observation layout this package was written for (crates/model OBS_VERSION).
OBS_VERSION = 1

#: Largest message sent or received (a StepBatch over thousands of envs).
MAX_MESSAGE_BYTES = 64 << 20


@dataclass(frozen=True)
class Spec:
    """What ``GetSpec`` says about the environment."""

    obs_version: int
    observation_names: tuple[str, ...]
    observation_low: tuple[float, ...]
    observation_high: tuple[float, ...]
    action_meanings: tuple[str, ...]
    control_interval_s: float
    episode_steps: int
    backend: str
    server_version: str
    scenarios: tuple[str, ...]
    policies: tuple[str, ...]

    @classmethod
    def from_proto(cls, m: pb.EnvSpec) -> Spec:
        """Copy a protobuf ``EnvSpec``."""
        return cls(
            obs_version=m.obs_version,
            observation_names=tuple(m.observation_names),
            observation_low=tuple(m.observation_low),
            observation_high=tuple(m.observation_high),
            action_meanings=tuple(m.action_meanings),
            control_interval_s=m.control_interval_s,
            episode_steps=m.episode_steps,
            backend=m.backend,
            server_version=m.server_version,
            scenarios=tuple(m.scenarios),
            policies=tuple(m.policies),
        )


def _wrap(method: str, e: grpc.RpcError, address: str) -> Exception:
    code = e.code() if hasattr(e, "code") else None
    details = (e.details() if hasattr(e, "details") else None) or str(e)
    if code == grpc.StatusCode.UNAVAILABLE:
        return ServerUnreachableError(f"FarmControl server at {address} unavailable: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgumentError(method, code.name, details)
    return FarmRpcError(method, code.name if code else "UNKNOWN", details)


class FarmClient:
    """A connection to one FarmControl server (simulator or gateway-ext)."""

    def __init__(self, address: str, *, connect_timeout_s: float = 10.0) -> None:
        self.address = address
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                # Loopback, small messages: no proxy detour, no batching delay.
                ("grpc.enable_http_proxy", 0),
            ],
        )
        try:
            grpc.channel_ready_future(self._channel).result(timeout=connect_timeout_s)
        except grpc.FutureTimeoutError as e:
            self._channel.close()
            raise ServerUnreachableError(
                f"no FarmControl server reachable at {address} within {connect_timeout_s:g} s"
            ) from e
        stub = pb_grpc.FarmControlStub(self._channel)
        self._get_spec = stub.GetSpec
        self._reset = stub.Reset
        self._step = stub.Step
        self._step_batch = stub.StepBatch

    def get_spec(self, *, farm: str = "", action_space: str = "",
                 check_version: bool = True) -> Spec:
        """The environment spec; checks the observation layout version.

        Raises:
            SpecMismatchError: the server's ``obs_version`` is not :data:`OBS_VERSION`.
        """
        try:
            m = self._get_spec(pb.SpecRequest(farm=farm, action_space=action_space))
        except grpc.RpcError as e:
            raise _wrap("GetSpec", e, self.address) from None
        spec = Spec.from_proto(m)
        if check_version and spec.obs_version != OBS_VERSION:
            raise SpecMismatchError(
                f"server {self.address} ({spec.server_version}) serves observation layout "
                f"v{spec.obs_version}, this package expects v{OBS_VERSION}: upgrade the one "
                "that is older"
            )
        return spec

    def reset(self, env_id: str, seed: int, *, scenario: str = "", scenario_yaml: str = "",
              options: Mapping[str, str] | None = None) -> pb.StepReply:
        """Start an episode of ``env_id``."""
        req = pb.ResetRequest(env_id=env_id, seed=seed, scenario=scenario,
                              scenario_yaml=scenario_yaml, options=dict(options or {}))
        try:
            return self._reset(req)
        except grpc.RpcError as e:
            raise _wrap("Reset", e, self.address) from None

    def step(self, env_id: str, action: int) -> pb.StepReply:
        """Apply one action to ``env_id``."""
        try:
            return self._step(pb.StepRequest(env_id=env_id, action=action))
        except grpc.RpcError as e:
            raise _wrap("Step", e, self.address) from None

    def step_batch(self, env_ids: Sequence[str], actions: Iterable[int], *,
                   auto_reset: bool = True) -> Sequence[pb.StepReply]:
        """Step many environments in one call (one action each, in order)."""
        req = pb.StepBatchRequest(auto_reset=auto_reset)
        steps = req.steps
        for env_id, a in zip(env_ids, actions, strict=True):
            steps.add(env_id=env_id, action=int(a))
        try:
            return self._step_batch(req).replies
        except grpc.RpcError as e:
            raise _wrap("StepBatch", e, self.address) from None

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()
