"""``FarmEnv``: one rust-farm as a Gymnasium environment over FarmControl."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ._proto import control_pb2 as pb
from .client import FarmClient, Spec, resolve_transport
from .errors import FarmError
from .server import SimServer

SUMMARY_FIELDS = (
    "tasks", "completed", "unfinished", "qos", "latency_p50_s", "latency_p95_s",
    "latency_p99_s", "replica_seconds", "mean_replicas", "max_replicas",
    "scaling_actions", "reversals", "drain_s",
)

_ids = itertools.count()


def summary_dict(s: pb.RunSummary) -> dict[str, float | int]:
    """A ``RunSummary`` as a plain dict (the fields ``farmctl sim eval`` prints)."""
    return {f: getattr(s, f) for f in SUMMARY_FIELDS}


def info_dict(r: pb.StepReply) -> dict[str, Any]:
    """The ``info`` of a step: the interval's diagnostics, plus ``summary``
    (the run's metrics) when the episode ended."""
    i = r.info
    out: dict[str, Any] = {
        "time_s": i.time_s,
        "desired": i.desired,
        "ready": i.ready,
        "starting": i.starting,
        "backlog": i.backlog,
        "in_flight": i.in_flight,
        "window_qos": i.window_qos if i.HasField("window_qos") else None,
        "arrivals": i.arrivals,
        "completions": i.completions,
    }
    if i.HasField("summary"):
        out["summary"] = summary_dict(i.summary)
    return out


def scenario_fields(scenario: str | os.PathLike[str] | None) -> tuple[str, str]:
    """``(name, yaml)`` for a scenario given as a built-in name, inline YAML
    (any text with a newline) or a path to a ``.yaml``/``.yml`` file."""
    if scenario is None:
        return "", ""
    if isinstance(scenario, os.PathLike) or (
        isinstance(scenario, str) and "\n" not in scenario
        and scenario.endswith((".yaml", ".yml"))
    ):
        return "", Path(scenario).read_text()
    if "\n" in scenario:
        return "", scenario
    return scenario, ""


def observation_space(spec: Spec) -> spaces.Box:
    """The Box of one observation, from the spec's bounds."""
    return spaces.Box(
        low=np.asarray(spec.observation_low, dtype=np.float32),
        high=np.asarray(spec.observation_high, dtype=np.float32),
        dtype=np.float32,
    )


class Connection:
    """A client plus, for backend ``sim`` without an address, the server
    process it started. Shared by the single and the vector environment."""

    def __init__(self, backend: str, address: str | None, farmctl: str | None,
                 transport: str | None = None) -> None:
        if backend not in ("sim", "live"):
            raise ValueError(f"backend must be 'sim' or 'live', got {backend!r}")
        self.server: SimServer | None = None
        # Before any server is started: an unusable transport fails fast.
        transport = resolve_transport(transport)
        if address is None:
            if backend == "live":
                raise ValueError(
                    "backend 'live' needs the address of gateway-ext's FarmControl "
                    "endpoint (address='HOST:PORT')"
                )
            self.server = SimServer(farmctl)
            address = self.server.address
        try:
            self.client = FarmClient(address, transport=transport)
        except FarmError:
            self.close()
            raise

    def close(self) -> None:
        """Close the client and stop a server this connection started."""
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self.server is not None:
            self.server.close()


class FarmEnv(gym.Env[np.ndarray, np.int64]):
    """A rust-farm controlled one decision per control interval.

    Args:
        scenario: default scenario of each episode (built-in name, inline YAML
            or a path); ``reset(options={"scenario": ...})`` overrides it.
        backend: ``"sim"`` (``farmctl sim serve``) or ``"live"`` (gateway-ext
            with the farm in ``external`` mode).
        address: ``HOST:PORT`` of a FarmControl server; for ``sim`` without
            one, a server is started on a free loopback port.
        farm: live backend: the farm's name (the env id on the server).
        action_space: ``default``, ``paper``, ``estimates`` or a comma list of
            action meanings.
        server_options: extra reset options sent on every reset (e.g.
            ``{"randomize": "true"}``); see the server docs for the keys.
        farmctl: path of the ``farmctl`` binary (else ``FARMCTL`` or the
            workspace's target dir).
        step_info: ``False`` leaves out the per-step diagnostics of ``info``
            (``step`` then returns ``{}``, or ``{"summary": ...}`` when the
            episode ends), which saves their decoding on every step.
        stream: step over one lockstep gRPC stream (``StepStream``, faster
            than a unary call per step; see BENCHMARKS.md "Gymnasium"), with
            unary ``Step`` calls when the server has no stream (gateway-ext);
            ``False``: always unary.
        transport: ``"auto"`` (the native extension ``rustfarm_native`` when
            it imports, else grpcio), ``"native"`` or ``"grpcio"``; ``None``
            reads ``RUSTFARM_TRANSPORT``. Both give the same observations,
            rewards and infos, bit for bit; native costs Python far less per
            step (BENCHMARKS.md "Gymnasium").

    ``reset(seed=..., options=...)``: options ``scenario`` (name, YAML text or
    path), ``episode_seed`` (the simulator seed itself, bypassing the env's
    generator: the seeds of ``farmctl sim eval``) and any other key, passed to
    the server as a string. ``step`` returns
    the run's metrics in ``info["summary"]`` when the episode ends.
    """

    metadata = {"render_modes": []}  # noqa: RUF012 (Gymnasium's convention)

    def __init__(self, scenario: str | os.PathLike[str] | None = "paper-4phase", *,
                 backend: str = "sim", address: str | None = None, farm: str | None = None,
                 action_space: str = "default",
                 server_options: Mapping[str, str] | None = None,
                 farmctl: str | None = None, render_mode: str | None = None,
                 step_info: bool = True, stream: bool = True,
                 transport: str | None = None) -> None:
        super().__init__()
        if render_mode is not None:
            raise ValueError("FarmEnv has no render modes")
        self.backend = backend
        self._conn = Connection(backend, address, farmctl, transport)
        self.client = self._conn.client
        self.transport = self.client.transport
        try:
            self.farm_spec = self.client.get_spec(farm=farm or "", action_space=action_space)
        except FarmError:
            self._conn.close()
            raise
        self.observation_space = observation_space(self.farm_spec)
        self.action_space = spaces.Discrete(len(self.farm_spec.action_meanings))
        self.action_meanings = list(self.farm_spec.action_meanings)
        self.scenario = scenario
        self.action_space_name = action_space
        self.server_options = {str(k): str(v) for k, v in (server_options or {}).items()}
        if backend == "live":
            if not farm:
                raise ValueError("backend 'live' needs farm='NAME'")
            self.env_id = farm
        else:
            self.env_id = f"py-{os.getpid()}-{next(_ids)}-{uuid.uuid4().hex[:8]}"
        self.step_info = step_info
        self._step = self.client.step_streamed if stream else self.client.step
        self._stream = stream
        # Native: one extension call returns the whole step tuple.
        self._native = self.client.native
        self._obs_dim = int(self.observation_space.shape[0])
        self._closed = False

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; the first observation and its info."""
        super().reset(seed=seed)
        opts = dict(options or {})
        exact_seed = opts.pop("episode_seed", None)
        name, yaml = scenario_fields(opts.pop("scenario", self.scenario))
        if "scenario_yaml" in opts:
            name, yaml = "", str(opts.pop("scenario_yaml"))
        server_opts = dict(self.server_options)
        server_opts.update({str(k): str(v) for k, v in opts.items()})
        if self.action_space_name != "default":
            server_opts.setdefault("action_space", self.action_space_name)
        # The episode seed comes from the env's generator, so reset(seed=s)
        # followed by seedless resets is reproducible too.
        episode_seed = int(self.np_random.integers(0, 2**63 - 1))
        if exact_seed is not None:
            # The simulator's own seed, as `farmctl sim eval --seed` uses it.
            episode_seed = int(exact_seed)
        r = self.client.reset(self.env_id, episode_seed, scenario=name, scenario_yaml=yaml,
                              options=server_opts)
        return np.array(r.observation, dtype=np.float32), info_dict(r)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply one action and advance one control interval."""
        if self._native is not None:
            return self._native.step_env(self.env_id, int(action), self.step_info, self._stream)
        r = self._step(self.env_id, int(action))
        if self.step_info:
            info = info_dict(r)
        elif r.terminated or r.truncated:
            info = {"summary": summary_dict(r.info.summary)}
        else:
            info = {}
        # fromiter with a known length: about 4x cheaper than np.array on a
        # short protobuf repeated field.
        obs = np.fromiter(r.observation, np.float32, self._obs_dim)
        return obs, r.reward, r.terminated, r.truncated, info

    def close(self) -> None:
        """Close the connection and stop a server started for this env."""
        if not getattr(self, "_closed", True):
            self._closed = True
            self._conn.close()
