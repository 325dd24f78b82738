"""FarmEnv and FarmVectorEnv against a real simulator server."""

from __future__ import annotations

import socket

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rustfarm_gym
from rustfarm_gym import (
    FarmClient,
    FarmEnv,
    FarmVectorEnv,
    InvalidArgumentError,
    ServerStartError,
    ServerUnreachableError,
    SpecMismatchError,
)
from rustfarm_gym.checks import check_vector_env

SHORT = {"episode_steps": "6"}


def test_check_env_passes(address: str) -> None:
    env = FarmEnv("steady", address=address, server_options=SHORT)
    check_env(env, skip_render_check=True)
    env.close()


def test_registered_id_starts_its_own_server() -> None:
    env = gym.make("RustFarm-v0", server_options=SHORT)
    try:
        check_env(env.unwrapped)
        obs, _ = env.reset(seed=3)
        assert obs.shape == (17,)
    finally:
        env.close()
    assert {"RustFarm-v0", "RustFarmPaper-v0", "RustFarmRandomized-v0"} <= set(gym.registry)


def test_same_seed_reproduces_observations(address: str) -> None:
    env = FarmEnv("paper-4phase", address=address, server_options={"randomize": "true"})
    runs = []
    for _ in range(2):
        obs, _ = env.reset(seed=42)
        traj = [obs]
        for a in [4, 4, 5, 3, 2, 6, 0, 3]:
            traj.append(env.step(a)[0])
        runs.append(np.stack(traj))
    np.testing.assert_array_equal(runs[0], runs[1])
    other, _ = env.reset(seed=43)
    assert not np.array_equal(other, runs[0][0])
    env.close()


def test_episode_end_carries_run_metrics(address: str) -> None:
    env = FarmEnv("steady", address=address, server_options=SHORT, action_space="paper")
    assert env.action_meanings == ["delta:-1", "delta:0", "delta:+1"]
    env.reset(seed=1)
    for i in range(6):
        _, _, term, trunc, info = env.step(2)
        if i < 5:
            assert not (term or trunc) and "summary" not in info
    assert trunc and not term
    s = info["summary"]
    assert s["tasks"] > 0 and 0.0 <= s["qos"] <= 1.0 and s["replica_seconds"] > 0
    with pytest.raises(rustfarm_gym.FarmRpcError) as e:
        env.step(1)
    assert e.value.code == "FAILED_PRECONDITION"
    env.close()


def test_malformed_scenario_raises_with_server_message(address: str) -> None:
    env = FarmEnv(address=address)
    bad = "name: broken\narrivals: {kind: nope}\n"
    with pytest.raises(InvalidArgumentError) as e:
        env.reset(seed=1, options={"scenario": bad})
    assert "arrivals.kind" in e.value.message and "nope" in e.value.message
    with pytest.raises(InvalidArgumentError) as e:
        env.reset(seed=1, options={"scenario": "no-such-scenario"})
    assert "unknown scenario" in e.value.message
    with pytest.raises(InvalidArgumentError) as e:
        env.reset(seed=1, options={"randomise": "true"})
    assert "unknown option `randomise`" in e.value.message
    env.reset(seed=1)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        env.step(99)
    env.close()


def test_inline_yaml_scenario(address: str) -> None:
    yaml = """\
name: tiny
arrivals: {kind: phases, base_rate: 2.0, phases: [{shape: constant, duration_s: 40, level: 1}]}
service: {dist: {kind: constant, value: 1.0}}
deadline: {kind: fixed, seconds: 3}
platform:
  control_interval_s: 5
  episode_steps: 4
  min_replicas: 1
  max_replicas: 4
  initial_replicas: 2
  startup_delay: {kind: constant, value: 1}
  scale_down_delay: {kind: constant, value: 1}
"""
    env = FarmEnv(address=address)
    _, info = env.reset(seed=1, options={"scenario": yaml})
    assert info["time_s"] == 5.0 and info["desired"] == 2
    env.close()


def test_vector_env_passes_check(address: str) -> None:
    venv = FarmVectorEnv(4, "steady", address=address, server_options=SHORT)
    check_vector_env(venv)
    venv.close()


def test_vector_env_matches_single_envs(address: str) -> None:
    n = 3
    venv = FarmVectorEnv(n, "bursty", address=address, server_options=SHORT)
    singles = [FarmEnv("bursty", address=address, server_options=SHORT) for _ in range(n)]
    vobs, _ = venv.reset(seed=7)
    sobs = np.stack([e.reset(seed=7 + i)[0] for i, e in enumerate(singles)])
    np.testing.assert_array_equal(vobs, sobs)
    rng = np.random.default_rng(0)
    for step in range(6):
        acts = rng.integers(0, 7, size=n)
        vo, vr, _, vtr, vinfo = venv.step(acts)
        outs = [e.step(int(a)) for e, a in zip(singles, acts, strict=True)]
        np.testing.assert_array_equal(vr, [o[1] for o in outs])
        if step < 5:
            np.testing.assert_array_equal(vo, np.stack([o[0] for o in outs]))
        else:
            # Episode end: the single envs' last observation is final_obs,
            # and the vector env already started the next episode.
            assert vtr.all()
            for i in range(n):
                np.testing.assert_array_equal(vinfo["final_obs"][i], outs[i][0])
                assert vinfo["final_info"]["summary"]["qos"][i] == outs[i][4]["summary"]["qos"]
    venv.close()
    for e in singles:
        e.close()


def test_spec_version_mismatch_is_reported(address: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rustfarm_gym.client, "OBS_VERSION", 999)
    with pytest.raises(SpecMismatchError, match="v999"):
        FarmEnv(address=address)


def test_unreachable_server_is_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port now.
    with pytest.raises(ServerUnreachableError, match=str(port)):
        FarmClient(f"127.0.0.1:{port}", connect_timeout_s=1.0)


def test_missing_binary_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("FARMCTL", str(tmp_path / "nope"))
    with pytest.raises(ServerStartError, match="FARMCTL"):
        FarmEnv()


def test_binary_that_does_not_serve_is_reported(tmp_path) -> None:
    fake = tmp_path / "farmctl"
    fake.write_text("#!/bin/sh\necho 'no such command' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(ServerStartError, match="no such command"):
        rustfarm_gym.SimServer(fake)


def test_live_backend_needs_an_address() -> None:
    with pytest.raises(ValueError, match="gateway-ext"):
        FarmEnv(backend="live", farm="f")


def _bits(a: np.ndarray) -> np.ndarray:
    """The raw bits of a float array, so NaNs and signed zeros compare exactly."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def test_packed_vector_env_is_bit_identical_to_single_envs(address: str) -> None:
    # Two and a half episodes of 6 steps with auto-reset: the vector env's
    # packed replies (observations, rewards, flags, per-step info, final
    # observation and summary) equal stepping each single env with the same
    # seeds and actions, bit for bit.
    n, seed = 4, 11
    venv = FarmVectorEnv(n, "bursty", address=address, server_options=SHORT, step_info=True)
    singles = [FarmEnv("bursty", address=address, server_options=SHORT) for _ in range(n)]
    vobs, _ = venv.reset(seed=seed)
    sobs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(singles)])
    np.testing.assert_array_equal(_bits(vobs), _bits(sobs))
    # The server seeds episode k of env i with base_i + k (auto-reset).
    bases = [int(np.random.default_rng(seed + i).integers(0, 2**63 - 1)) for i in range(n)]
    episodes = [1] * n
    rng = np.random.default_rng(5)
    ended = 0
    for _ in range(15):
        acts = rng.integers(0, venv.single_action_space.n, size=n)
        vo, vr, vte, vtr, vinfo = venv.step(acts)
        assert vo.dtype == np.float32 and vr.dtype == np.float64
        for i, env in enumerate(singles):
            so, sr, ste, s_tr, sinfo = env.step(int(acts[i]))
            assert _bits(np.float64(sr)) == _bits(vr[i:i + 1])[0]
            assert (ste, s_tr) == (bool(vte[i]), bool(vtr[i]))
            for key in rustfarm_gym.vector.INFO_KEYS:
                want = np.nan if sinfo[key] is None else float(sinfo[key])
                assert _bits(np.float64(want)) == _bits(vinfo[key][i:i + 1])[0], key
            if ste or s_tr:
                ended += 1
                np.testing.assert_array_equal(_bits(vinfo["final_obs"][i]), _bits(so))
                fin = {k: v[i] for k, v in vinfo["final_info"]["summary"].items()
                       if not k.startswith("_")}
                assert fin == sinfo["summary"]
                so, _ = env.reset(options={"episode_seed": bases[i] + episodes[i]})
                episodes[i] += 1
            np.testing.assert_array_equal(_bits(vo[i]), _bits(so))
    assert ended == 2 * n
    venv.close()
    for e in singles:
        e.close()


def test_packed_batch_equals_per_step_replies(address: str) -> None:
    # The same steps through the packed and the per-step StepBatch forms.
    client = FarmClient(address)
    ids = {form: [f"pk-{form}-{i}" for i in range(70)] for form in ("packed", "rows")}
    for form in ids:
        for i, env_id in enumerate(ids[form]):
            client.reset(env_id, 100 + i, scenario="spike", options=SHORT)
    stepper = client.batch_stepper(ids["packed"], info=True)
    rng = np.random.default_rng(1)
    saw_end = False
    for _ in range(8):
        acts = rng.integers(0, 7, size=70)
        p = stepper.step(acts)
        rows = client.step_batch(ids["rows"], acts.tolist(), auto_reset=True)
        np.testing.assert_array_equal(
            _bits(p.observations),
            _bits(np.array([list(r.observation) for r in rows], dtype=np.float32)))
        np.testing.assert_array_equal(_bits(p.rewards), _bits(np.array([r.reward for r in rows])))
        np.testing.assert_array_equal(p.terminated, [r.terminated for r in rows])
        np.testing.assert_array_equal(p.truncated, [r.truncated for r in rows])
        assert p.info is not None
        np.testing.assert_array_equal(p.info[:, 1], [r.info.desired for r in rows])
        done = [i for i, r in enumerate(rows) if r.terminated or r.truncated]
        assert p.ended.tolist() == done
        for i, r in zip(done, p.ended_replies, strict=True):
            assert list(r.final_observation) == list(rows[i].final_observation)
            assert r.info.summary == rows[i].info.summary
            saw_end = True
    assert saw_end
    client.close()


def test_encode_actions_matches_protobuf() -> None:
    from rustfarm_gym._proto import control_pb2 as pb
    from rustfarm_gym.client import encode_actions

    for acts in ([0, 3, 127], [5, 128, 300, 2**32 - 1], [1] * 200, []):
        wire = encode_actions(np.array(acts, dtype=np.int64))
        assert list(pb.StepBatchRequest.FromString(wire).actions) == acts
    with pytest.raises(ValueError):
        encode_actions(np.array([-1]))


def test_malformed_batches_are_refused(address: str) -> None:
    from rustfarm_gym._proto import control_pb2 as pb

    client = FarmClient(address)
    client.reset("mb-0", 1, scenario="steady", options=SHORT)
    stepper = client.batch_stepper(["mb-0", "mb-missing"])
    with pytest.raises(rustfarm_gym.FarmRpcError) as e:
        stepper.step([1, 1])
    assert e.value.code == "NOT_FOUND" and "mb-missing" in e.value.message
    with pytest.raises(ValueError, match="3 actions for 2"):
        stepper.step([1, 1, 1])
    both = pb.StepBatchRequest(steps=[pb.StepRequest(env_id="mb-0", action=1)],
                               env_ids=["mb-0"], actions=[1], packed=True)
    # Hand-made malformed requests go through grpcio's raw call (neither
    # transport's own API can build them).
    raw = FarmClient(address, transport="grpcio")
    with pytest.raises(InvalidArgumentError, match="not both"):
        raw._call_step_batch_raw(both.SerializeToString())
    short = pb.StepBatchRequest(env_ids=["mb-0", "mb-0"], actions=[1], packed=True)
    with pytest.raises(InvalidArgumentError, match="2 env_ids but 1 actions"):
        raw._call_step_batch_raw(short.SerializeToString())
    raw.close()
    dup = client.batch_stepper(["mb-0", "mb-0"])
    with pytest.raises(InvalidArgumentError, match="twice"):
        dup.step([1, 1])
    client.close()


def test_step_info_off_keeps_the_summary(address: str) -> None:
    full = FarmEnv("steady", address=address, server_options=SHORT)
    lean = FarmEnv("steady", address=address, server_options=SHORT, step_info=False)
    full.reset(seed=4)
    lean.reset(seed=4)
    for i in range(6):
        fo, fr, fte, ftr, finfo = full.step(3)
        lo, lr, lte, ltr, linfo = lean.step(3)
        np.testing.assert_array_equal(fo, lo)
        assert (fr, fte, ftr) == (lr, lte, ltr)
        if i < 5:
            assert linfo == {}
    assert linfo == {"summary": finfo["summary"]}
    full.close()
    lean.close()


def test_streamed_steps_equal_unary_steps(address: str) -> None:
    # The lockstep stream returns the replies unary Step calls return, bit
    # for bit, through an episode end; a failing step raises the server's
    # status and the next streamed step opens a new stream.
    client = FarmClient(address)
    for env_id in ("st-stream", "st-unary"):
        client.reset(env_id, 9, scenario="spike", options=SHORT)
    for a in [4, 0, 6, 3, 3, 2]:
        s = client.step_streamed("st-stream", a)
        u = client.step("st-unary", a)
        s.env_id = u.env_id
        assert s.SerializeToString() == u.SerializeToString()
    assert s.truncated or s.terminated
    assert s.info.HasField("summary")
    with pytest.raises(rustfarm_gym.FarmRpcError) as err:
        client.step_streamed("st-stream", 1)  # the episode has ended
    assert err.value.code == "FAILED_PRECONDITION"
    with pytest.raises(rustfarm_gym.FarmRpcError, match="st-nowhere") as err:
        client.step_streamed("st-nowhere", 1)
    assert err.value.code == "NOT_FOUND"
    client.reset("st-stream", 9, scenario="spike", options=SHORT)
    with pytest.raises(InvalidArgumentError, match="99"):
        client.step_streamed("st-stream", 99)
    client.step_streamed("st-stream", 1)
    assert client.stream_available
    client.close()


def test_env_stream_and_unary_paths_agree(address: str) -> None:
    streamed = FarmEnv("bursty", address=address, server_options=SHORT)
    unary = FarmEnv("bursty", address=address, server_options=SHORT, stream=False)
    for env in (streamed, unary):
        env.reset(seed=21)
    for a in [1, 5, 5, 0, 2, 6]:
        so, sr, ste, s_tr, sinfo = streamed.step(a)
        uo, ur, ute, u_tr, uinfo = unary.step(a)
        np.testing.assert_array_equal(_bits(so), _bits(uo))
        assert (sr, ste, s_tr) == (ur, ute, u_tr)
        assert sinfo == uinfo
    assert streamed.client.stream_available
    streamed.close()
    unary.close()


def test_stream_falls_back_to_unary_without_step_stream() -> None:
    # A server of FarmControl alone (gateway-ext serves no StepStream): the
    # first streamed step gets UNIMPLEMENTED and is sent as a unary Step.
    # The server is an in-process double that answers Step with the action
    # echoed in the reward, since only the client's fallback is under test.
    from concurrent import futures

    import grpc

    from rustfarm_gym._proto import control_pb2 as pb
    from rustfarm_gym._proto import control_pb2_grpc as pb_grpc

    class StepOnly(pb_grpc.FarmControlServicer):
        def Step(self, request, context):  # noqa: N802 (generated name)
            return pb.StepReply(env_id=request.env_id, reward=float(request.action))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_FarmControlServicer_to_server(StepOnly(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        client = FarmClient(f"127.0.0.1:{port}")
        assert client.step_streamed("live", 3).reward == 3.0
        assert not client.stream_available
        assert client.step_streamed("live", 5).reward == 5.0
        client.close()
    finally:
        server.stop(grace=None)


def test_split_batches_equal_one_batch(address: str) -> None:
    # A step cut into three StepBatch calls in flight at once returns what
    # one call returns, in the same order, episode ends included.
    client = FarmClient(address)
    ids = {parts: [f"sp{parts}-{i}" for i in range(40)] for parts in (1, 3)}
    for env_ids in ids.values():
        for i, env_id in enumerate(env_ids):
            client.reset(env_id, 300 + i, scenario="bursty", options=SHORT)
    one = client.batch_stepper(ids[1], info=True, parts=1)
    three = client.batch_stepper(ids[3], info=True, parts=3)
    assert (one.parts, three.parts) == (1, 3)
    rng = np.random.default_rng(2)
    ended = 0
    for _ in range(8):
        acts = rng.integers(0, 7, size=40)
        a, b = one.step(acts), three.step(acts)
        ended += len(a.ended)
        for field in ("observations", "rewards", "info"):
            np.testing.assert_array_equal(_bits(getattr(a, field)), _bits(getattr(b, field)))
        np.testing.assert_array_equal(a.terminated, b.terminated)
        np.testing.assert_array_equal(a.truncated, b.truncated)
        assert a.ended.tolist() == b.ended.tolist()
        for ra, rb in zip(a.ended_replies, b.ended_replies, strict=True):
            assert ra.info.summary == rb.info.summary
            assert list(ra.final_observation) == list(rb.final_observation)
    assert ended == 40
    client.close()
