"""A thin, typed client of the FarmControl gRPC service.

Every gRPC failure becomes a :class:`~rustfarm_gym.errors.FarmError`
subclass carrying the server's message, so callers never see raw
``grpc.RpcError``.

Two transports carry the same protocol: ``grpcio`` (pure Python package)
and ``native``, the extension module ``rustfarm_native`` (gym/native/, a
Rust tonic client built and installed by scripts/setup.sh), which costs
Python far less per message (figures in BENCHMARKS.md "Gymnasium").
``transport="auto"`` (the default, or the ``RUSTFARM_TRANSPORT``
environment variable) picks the native one when it imports. Both hand back
the same protobuf messages and arrays, bit for bit.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from ._proto import control_pb2 as pb
from ._proto import control_pb2_grpc as pb_grpc
from .errors import (
    FarmError,
    FarmRpcError,
    InvalidArgumentError,
    ServerUnreachableError,
    SpecMismatchError,
    TransportUnavailableError,
)

try:  # The native transport is optional: grpcio is always there.
    import rustfarm_native as _native
except ImportError as _e:  # pragma: no cover (depends on the install)
    _native = None
    _NATIVE_IMPORT_ERROR: str = str(_e)
else:
    _NATIVE_IMPORT_ERROR = ""

#: Observation layout this package was written for (crates/model OBS_VERSION).
OBS_VERSION = 1

#: Largest message sent or received (a StepBatch over thousands of envs).
MAX_MESSAGE_BYTES = 64 << 20

#: Columns of :attr:`PackedBatch.info` (``PackedSteps.info`` in the proto).
PACKED_INFO_FIELDS = ("time_s", "desired", "ready", "starting", "backlog", "in_flight",
                      "window_qos", "arrivals", "completions")

#: Wire tag of ``StepBatchRequest.actions`` (field 4, length-delimited).
_ACTIONS_TAG = bytes([4 << 3 | 2])

#: Method path of the lockstep stream (service ``FarmControlStream``).
_STEP_STREAM = "/farm.control.v1.FarmControlStream/StepStream"

#: Most encoded ``StepRequest`` kept by a :class:`StepStream` (env id x action).
_MAX_CACHED_REQUESTS = 4096

#: Environment variable that chooses the transport when none is passed.
TRANSPORT_ENV = "RUSTFARM_TRANSPORT"

#: Accepted transport names.
TRANSPORTS = ("auto", "native", "grpcio")


def native_available() -> bool:
    """Whether the native transport (``rustfarm_native``) imports."""
    return _native is not None


def resolve_transport(transport: str | None = None) -> str:
    """``"native"`` or ``"grpcio"`` for a requested transport.

    ``None`` reads :data:`TRANSPORT_ENV` (default ``"auto"``); ``"auto"``
    is native when the extension imports, grpcio otherwise.

    Raises:
        ValueError: an unknown name.
        TransportUnavailableError: ``"native"`` was asked for and the
            extension does not import.
    """
    name = (transport if transport is not None else os.environ.get(TRANSPORT_ENV, "")) or "auto"
    name = name.strip().lower()
    if name not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {name!r}")
    if name == "auto":
        return "native" if _native is not None else "grpcio"
    if name == "native" and _native is None:
        raise TransportUnavailableError(
            "transport 'native' asked for, but the extension module rustfarm_native does not "
            f"import ({_NATIVE_IMPORT_ERROR}); build and install it with scripts/setup.sh, or "
            f"use transport='grpcio' ({TRANSPORT_ENV}=grpcio)"
        )
    return name


def _check_actions(actions: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """``actions`` as a flat integer array of length ``n``, checked."""
    a = np.asarray(actions).reshape(-1)
    if a.shape[0] != n:
        raise ValueError(f"{a.shape[0]} actions for {n} environments")
    if a.dtype.kind not in "iu":
        raise ValueError(f"actions must be integers, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 0xFFFF_FFFF):
        raise ValueError("actions must be in [0, 2**32)")
    return a


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


@dataclass(frozen=True)
class PackedBatch:
    """The result of one packed ``StepBatch``, as numpy arrays in the order
    of the environments."""

    #: ``(n, obs_dim)`` float32; with auto-reset, the new episode's first
    #: observation where one ended.
    observations: np.ndarray
    #: ``(n,)`` float64.
    rewards: np.ndarray
    #: ``(n,)`` bool.
    terminated: np.ndarray
    #: ``(n,)`` bool.
    truncated: np.ndarray
    #: ``(n, 9)`` float64 (columns :data:`PACKED_INFO_FIELDS`, ``window_qos``
    #: NaN when absent), or ``None`` when not asked for.
    info: np.ndarray | None
    #: Indices of the environments whose episode ended at this step.
    ended: np.ndarray
    #: Their complete replies (run summary in ``info.summary``; with
    #: auto-reset, the ended episode's last observation in
    #: ``final_observation``), in the order of ``ended``.
    ended_replies: Sequence[pb.StepReply]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_actions(actions: np.ndarray) -> bytes:
    """``StepBatchRequest.actions`` as wire bytes (appended to an encoded
    request, protobuf merges it in). Actions below 128 are one byte each on
    the wire, so that common case is one numpy cast instead of a Python
    loop; larger ones go through the protobuf library."""
    a = np.asarray(actions)
    if a.size and (a.min() < 0 or a.max() > 0xFFFF_FFFF):
        raise ValueError("actions must be in [0, 2**32)")
    if a.size == 0:
        return b""
    if a.max() < 0x80:
        payload = a.astype(np.uint8).tobytes()
        return _ACTIONS_TAG + _varint(len(payload)) + payload
    return pb.StepBatchRequest(actions=a.tolist()).SerializeToString()


class BatchStepper:
    """Steps a fixed list of environments with packed ``StepBatch`` calls.

    The request's environment ids and flags are encoded once; each step
    appends only the encoded actions. The reply's flat arrays are decoded
    with one numpy call each, so the Python cost per call hardly grows with
    the number of environments. Built by :meth:`FarmClient.batch_stepper`.

    With ``parts`` > 1 the environments are cut into that many consecutive
    groups, one ``StepBatch`` each, all sent before the first reply is read:
    the server steps the groups in the order they arrive (all its cores on
    one group at a time), so this process can decode one group's reply
    while the server steps the next. Results are the same as one call's, in
    the same order. The default is one call: on the 2-core machine of
    BENCHMARKS.md ("Gymnasium") a second call in flight cost more Python
    CPU (grpcio futures) than the overlap saved.
    """

    def __init__(self, client: FarmClient, env_ids: Sequence[str], *, auto_reset: bool = True,
                 info: bool = False, parts: int = 1) -> None:
        self.client = client
        self.env_ids = tuple(env_ids)
        self.info = info
        n = len(self.env_ids)
        parts = max(1, min(int(parts), n))
        cuts = [n * k // parts for k in range(parts + 1)]
        #: ``(first, end, encoded request prefix)`` of each group.
        self._groups = [
            (lo, hi, pb.StepBatchRequest(env_ids=self.env_ids[lo:hi], auto_reset=auto_reset,
                                         packed=True, packed_info=info).SerializeToString())
            for lo, hi in itertools.pairwise(cuts)
        ]

    @property
    def parts(self) -> int:
        """Number of ``StepBatch`` calls per step."""
        return len(self._groups)

    def step(self, actions: Sequence[int] | np.ndarray) -> PackedBatch:
        """One action per environment, in the order of ``env_ids``."""
        n = len(self.env_ids)
        a = _check_actions(actions, n)
        if len(self._groups) == 1:
            reply = self.client._call_step_batch_raw(self._groups[0][2] + encode_actions(a))
            return self._decode(reply.packed, n)
        # Send every group before reading any reply (see the class docs).
        calls = [self.client._step_batch_raw.future(prefix + encode_actions(a[lo:hi]))
                 for lo, hi, prefix in self._groups]
        parts = [self._decode(self.client._result_of(call).packed, hi - lo)
                 for call, (lo, hi, _) in zip(calls, self._groups, strict=True)]
        offsets = [lo for lo, _, _ in self._groups]
        return PackedBatch(
            observations=np.concatenate([p.observations for p in parts]),
            rewards=np.concatenate([p.rewards for p in parts]),
            terminated=np.concatenate([p.terminated for p in parts]),
            truncated=np.concatenate([p.truncated for p in parts]),
            info=(np.concatenate([p.info for p in parts if p.info is not None])
                  if self.info else None),
            ended=np.concatenate([p.ended + lo for p, lo in zip(parts, offsets, strict=True)]),
            ended_replies=[r for p in parts for r in p.ended_replies],
        )

    def _decode(self, p: pb.PackedSteps, n: int) -> PackedBatch:
        """The arrays of a packed reply for ``n`` environments, checked."""
        dim = p.obs_dim
        obs = np.asarray(p.observations, dtype=np.float32)
        rewards = np.asarray(p.rewards, dtype=np.float64)
        term = np.asarray(p.terminated, dtype=np.bool_)
        trunc = np.asarray(p.truncated, dtype=np.bool_)
        info = np.asarray(p.info, dtype=np.float64) if self.info else None
        width = len(PACKED_INFO_FIELDS)
        if (obs.shape[0] != n * dim or rewards.shape[0] != n or term.shape[0] != n
                or trunc.shape[0] != n or (info is not None and info.shape[0] != n * width)):
            raise FarmRpcError("StepBatch", "DATA_LOSS",
                               f"packed reply for {n} environments has inconsistent array "
                               f"lengths (obs_dim {dim}, {obs.shape[0]} observations, "
                               f"{rewards.shape[0]} rewards)")
        return PackedBatch(
            observations=obs.reshape(n, dim),
            rewards=rewards,
            terminated=term,
            truncated=trunc,
            info=info.reshape(n, width) if info is not None else None,
            ended=np.asarray(p.ended, dtype=np.int64),
            ended_replies=p.ended_replies,
        )


class NativeBatchStepper:
    """:class:`BatchStepper` over the native transport: the same results,
    with the reply decoded into numpy arrays in Rust (``parts`` calls are
    sent at once there too). Built by :meth:`FarmClient.batch_stepper`."""

    def __init__(self, client: FarmClient, env_ids: Sequence[str], *, auto_reset: bool = True,
                 info: bool = False, parts: int = 1) -> None:
        self.client = client
        self.env_ids = tuple(env_ids)
        self.info = info
        assert client.native is not None
        self._stepper = client.native.batch_stepper(list(self.env_ids), auto_reset, info,
                                                     max(1, int(parts)))

    @property
    def parts(self) -> int:
        """Number of ``StepBatch`` calls per step."""
        return int(self._stepper.parts)

    def step(self, actions: Sequence[int] | np.ndarray) -> PackedBatch:
        """One action per environment, in the order of ``env_ids``."""
        a = _check_actions(actions, len(self.env_ids))
        obs, rewards, term, trunc, info, ended, raw = self._stepper.step(
            np.ascontiguousarray(a, dtype=np.uint32))
        return PackedBatch(observations=obs, rewards=rewards, terminated=term, truncated=trunc,
                           info=info, ended=ended,
                           ended_replies=[pb.StepReply.FromString(b) for b in raw])


class StepStream:
    """Lockstep ``Step`` calls over one ``FarmControlStream.StepStream``.

    Each :meth:`step` writes one request on the open HTTP/2 stream and reads
    its reply, which saves the per-call setup of a unary ``Step`` (figures
    in BENCHMARKS.md "Gymnasium"). grpcio's sync API feeds a stream's
    requests from an iterator that it reads on a thread of its own, so the
    requests go through a queue; the encoded request of each (env id,
    action) is kept and reused. Built and used by :meth:`FarmClient.step_streamed`.
    """

    _END = object()

    def __init__(self, client: FarmClient) -> None:
        self._address = client.address
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._encoded: dict[tuple[str, int], bytes] = {}
        self._lock = threading.Lock()
        self._replies = client._step_stream_raw(iter(self._requests.get, self._END))

    def step(self, env_id: str, action: int) -> pb.StepReply:
        """Apply one action to ``env_id``; its reply.

        Raises:
            FarmRpcError: the server ended the stream with this status (the
                stream is then unusable; :meth:`FarmClient.step_streamed`
                opens a new one on its next call).
        """
        key = (env_id, action)
        data = self._encoded.get(key)
        if data is None:
            if len(self._encoded) >= _MAX_CACHED_REQUESTS:
                self._encoded.clear()
            data = pb.StepRequest(env_id=env_id, action=action).SerializeToString()
            self._encoded[key] = data
        with self._lock:
            self._requests.put(data)
            try:
                return next(self._replies)
            except grpc.RpcError as e:
                raise _wrap("StepStream", e, self._address) from None
            except StopIteration:
                raise FarmRpcError("StepStream", "UNKNOWN",
                                   "the server ended the step stream without a reply") from None

    def close(self) -> None:
        """End the stream (its request thread stops at the end marker)."""
        self._requests.put(self._END)
        self._replies.cancel()


def _wrap(method: str, e: grpc.RpcError, address: str) -> Exception:
    code = e.code() if hasattr(e, "code") else None
    details = (e.details() if hasattr(e, "details") else None) or str(e)
    if code == grpc.StatusCode.UNAVAILABLE:
        return ServerUnreachableError(f"FarmControl server at {address} unavailable: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgumentError(method, code.name, details)
    return FarmRpcError(method, code.name if code else "UNKNOWN", details)


class FarmClient:
    """A connection to one FarmControl server (simulator or gateway-ext).

    ``transport``: ``"auto"`` (native when ``rustfarm_native`` imports),
    ``"native"`` or ``"grpcio"``; ``None`` reads ``RUSTFARM_TRANSPORT``
    (see :func:`resolve_transport`). The chosen one is in :attr:`transport`;
    :attr:`native` is the extension's client on the native transport.
    """

    def __init__(self, address: str, *, connect_timeout_s: float = 10.0,
                 transport: str | None = None) -> None:
        self.address = address
        self.transport = resolve_transport(transport)
        self._stream: StepStream | None = None
        #: The native client (``rustfarm_native.Client``), or None on grpcio.
        self.native: Any = None
        if self.transport == "native":
            assert _native is not None
            # Raises ServerUnreachableError itself, with the connect error.
            self.native = _native.Client(address, connect_timeout_s)
            self._stream_available = True
            return
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
        # The lockstep stream, requests pre-encoded (StepStream).
        self._step_stream_raw = self._channel.stream_stream(
            _STEP_STREAM,
            request_serializer=None,
            response_deserializer=pb.StepReply.FromString,
            _registered_method=True,
        )
        self._stream_available = True
        # StepBatch with a pre-encoded request (BatchStepper builds the bytes).
        self._step_batch_raw = self._channel.unary_unary(
            "/farm.control.v1.FarmControl/StepBatch",
            request_serializer=None,
            response_deserializer=pb.StepBatchReply.FromString,
            _registered_method=True,
        )

    @property
    def stream_available(self) -> bool:
        """False once the server answered UNIMPLEMENTED to ``StepStream``
        (gateway-ext serves none): streamed steps then use unary calls."""
        if self.native is not None:
            return bool(self.native.stream_available)
        return self._stream_available

    def get_spec(self, *, farm: str = "", action_space: str = "",
                 check_version: bool = True, obs_version: int = 0) -> Spec:
        """The environment spec; checks the observation layout version.

        ``obs_version`` asks for the names and bounds of another observation
        layout (``2``: with history; an environment gets it with the reset
        option ``obs_version``); 0 is the server's default.

        Raises:
            SpecMismatchError: the server's ``obs_version`` is not :data:`OBS_VERSION`
                (or the one asked for).
        """
        if self.native is not None:
            m = pb.EnvSpec.FromString(self.native.get_spec(farm, action_space, obs_version))
        else:
            try:
                m = self._get_spec(pb.SpecRequest(farm=farm, action_space=action_space,
                                                  obs_version=obs_version))
            except grpc.RpcError as e:
                raise _wrap("GetSpec", e, self.address) from None
        spec = Spec.from_proto(m)
        if check_version and spec.obs_version != (obs_version or OBS_VERSION):
            raise SpecMismatchError(
                f"server {self.address} ({spec.server_version}) serves observation layout "
                f"v{spec.obs_version}, this package expects v{obs_version or OBS_VERSION}: "
                "upgrade the one "
                "that is older"
            )
        return spec

    def reset(self, env_id: str, seed: int, *, scenario: str = "", scenario_yaml: str = "",
              options: Mapping[str, str] | None = None) -> pb.StepReply:
        """Start an episode of ``env_id``."""
        if self.native is not None:
            return pb.StepReply.FromString(self.native.reset(
                env_id, seed, scenario, scenario_yaml,
                {str(k): str(v) for k, v in (options or {}).items()}))
        req = pb.ResetRequest(env_id=env_id, seed=seed, scenario=scenario,
                              scenario_yaml=scenario_yaml, options=dict(options or {}))
        try:
            return self._reset(req)
        except grpc.RpcError as e:
            raise _wrap("Reset", e, self.address) from None

    def step(self, env_id: str, action: int) -> pb.StepReply:
        """Apply one action to ``env_id``."""
        if self.native is not None:
            return pb.StepReply.FromString(self.native.step(env_id, action))
        try:
            return self._step(pb.StepRequest(env_id=env_id, action=action))
        except grpc.RpcError as e:
            raise _wrap("Step", e, self.address) from None

    def step_streamed(self, env_id: str, action: int) -> pb.StepReply:
        """Apply one action to ``env_id`` over the client's lockstep
        stream (opened on first use): the same reply as :meth:`step`, at a
        lower cost per call. Falls back to :meth:`step` for good when the
        server has no ``StepStream`` (UNIMPLEMENTED, e.g. gateway-ext)."""
        if self.native is not None:
            return pb.StepReply.FromString(self.native.step_streamed(env_id, action))
        if not self._stream_available:
            return self.step(env_id, action)
        if self._stream is None:
            self._stream = StepStream(self)
        try:
            return self._stream.step(env_id, action)
        except FarmError as e:
            # The stream ended with this status: the next call opens a new one.
            self._stream.close()
            self._stream = None
            if getattr(e, "code", None) == grpc.StatusCode.UNIMPLEMENTED.name:
                # The whole call was refused, so the step was not applied.
                self._stream_available = False
                return self.step(env_id, action)
            raise

    def step_batch(self, env_ids: Sequence[str], actions: Iterable[int], *,
                   auto_reset: bool = True) -> Sequence[pb.StepReply]:
        """Step many environments in one call (one action each, in order)."""
        if self.native is not None:
            ids = list(env_ids)
            acts = [int(a) for a in actions]
            if len(ids) != len(acts):
                raise ValueError(f"{len(acts)} actions for {len(ids)} environments")
            return [pb.StepReply.FromString(b)
                    for b in self.native.step_batch(ids, acts, auto_reset)]
        req = pb.StepBatchRequest(auto_reset=auto_reset)
        steps = req.steps
        for env_id, a in zip(env_ids, actions, strict=True):
            steps.add(env_id=env_id, action=int(a))
        try:
            return self._step_batch(req).replies
        except grpc.RpcError as e:
            raise _wrap("StepBatch", e, self.address) from None

    def batch_stepper(self, env_ids: Sequence[str], *, auto_reset: bool = True,
                      info: bool = False, parts: int = 1) -> BatchStepper | NativeBatchStepper:
        """A :class:`BatchStepper` (:class:`NativeBatchStepper` on the native
        transport) for these environments (packed replies; ``info`` adds the
        per-step diagnostics; ``parts``: calls per step)."""
        if self.native is not None:
            return NativeBatchStepper(self, env_ids, auto_reset=auto_reset, info=info,
                                      parts=parts)
        return BatchStepper(self, env_ids, auto_reset=auto_reset, info=info, parts=parts)

    def _result_of(self, call: Any) -> pb.StepBatchReply:
        """The reply of a ``StepBatch`` future."""
        try:
            return call.result()
        except grpc.RpcError as e:
            raise _wrap("StepBatch", e, self.address) from None

    def _call_step_batch_raw(self, request: bytes) -> pb.StepBatchReply:
        try:
            return self._step_batch_raw(request)
        except grpc.RpcError as e:
            raise _wrap("StepBatch", e, self.address) from None

    def close(self) -> None:
        """Close the step stream, if open, and the channel."""
        if self.native is not None:
            self.native.close()
            return
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._channel.close()
