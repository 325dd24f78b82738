"""The native transport (``rustfarm_native``, gym/native/) against a real
simulator server: it must give the same observations, rewards, flags and
infos as grpcio, bit for bit, and the same errors.

The extension is built and installed by scripts/setup.sh; these tests fail
(they are not skipped) when it does not import.
"""

from __future__ import annotations

import inspect
import socket
import threading

import numpy as np
import pytest
import test_env  # the suite every transport must pass (same folder)
from gymnasium.utils.env_checker import check_env

import rustfarm_gym
from rustfarm_gym import (
    FarmClient,
    FarmEnv,
    FarmRpcError,
    FarmVectorEnv,
    InvalidArgumentError,
    ServerUnreachableError,
    TransportUnavailableError,
)
from rustfarm_gym.checks import check_vector_env

SHORT = {"episode_steps": "6"}
BOTH = ("native", "grpcio")


def _bits(a: np.ndarray | float) -> np.ndarray:
    """The raw bits of a float array, so that -0.0 != 0.0 and NaN == NaN."""
    a = np.asarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _assert_same(a: object, b: object) -> None:
    """Deep equality of infos: dicts key by key, arrays bit for bit with
    equal dtypes and shapes, object arrays element by element."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        if a.dtype == object:
            for x, y in zip(a.tolist(), b.tolist(), strict=True):
                _assert_same(x, y)
        elif a.dtype.kind == "f":
            np.testing.assert_array_equal(_bits(a), _bits(b))
        else:
            np.testing.assert_array_equal(a, b)
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b))


def test_native_transport_imports() -> None:
    assert rustfarm_gym.native_available(), (
        "rustfarm_native does not import: build and install it with scripts/setup.sh"
    )
    assert rustfarm_gym.resolve_transport("auto") == "native"


def test_transport_choice(address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUSTFARM_TRANSPORT", "grpcio")
    assert FarmClient(address).transport == "grpcio"
    monkeypatch.setenv("RUSTFARM_TRANSPORT", "native")
    client = FarmClient(address)
    assert client.transport == "native" and client.native is not None
    # An explicit argument wins over the variable.
    assert FarmClient(address, transport="grpcio").transport == "grpcio"
    with pytest.raises(ValueError, match="transport must be one of"):
        FarmClient(address, transport="carrier-pigeon")
    # Without the extension, "native" is refused with a clear error and
    # "auto" falls back to grpcio.
    monkeypatch.setattr(rustfarm_gym.client, "_native", None)
    with pytest.raises(TransportUnavailableError, match=r"scripts/setup\.sh"):
        FarmClient(address, transport="native")
    monkeypatch.delenv("RUSTFARM_TRANSPORT")
    assert FarmClient(address).transport == "grpcio"


@pytest.mark.parametrize("transport", BOTH)
def test_check_env_passes(address: str, transport: str) -> None:
    env = FarmEnv("steady", address=address, server_options=SHORT, transport=transport)
    assert env.transport == transport
    check_env(env, skip_render_check=True)
    env.close()
    venv = FarmVectorEnv(4, "steady", address=address, server_options=SHORT,
                         transport=transport)
    assert venv.transport == transport
    check_vector_env(venv)
    venv.close()


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("step_info", [True, False])
def test_single_env_is_bit_identical_across_transports(address: str, stream: bool,
                                                       step_info: bool) -> None:
    opts = {"randomize": "true", "episode_steps": "12"}
    envs = {t: FarmEnv("paper-4phase", address=address, server_options=opts, transport=t,
                       stream=stream, step_info=step_info) for t in BOTH}
    firsts = {t: e.reset(seed=11) for t, e in envs.items()}
    np.testing.assert_array_equal(_bits(firsts["native"][0]), _bits(firsts["grpcio"][0]))
    assert firsts["native"][1] == firsts["grpcio"][1]
    actions = np.random.default_rng(5).integers(0, envs["native"].action_space.n, size=40)
    ends = 0
    for a in actions.tolist():
        n_obs, n_rew, n_term, n_trunc, n_info = envs["native"].step(a)
        g_obs, g_rew, g_term, g_trunc, g_info = envs["grpcio"].step(a)
        assert n_obs.dtype == g_obs.dtype == np.float32 and n_obs.shape == g_obs.shape
        np.testing.assert_array_equal(_bits(n_obs), _bits(g_obs))
        assert _bits(np.float64(n_rew)) == _bits(np.float64(g_rew))
        assert type(n_rew) is type(g_rew)
        assert (n_term, n_trunc) == (g_term, g_trunc)
        # Same keys, values and Python types (ints stay ints, None stays None).
        assert n_info == g_info
        assert {k: type(v) for k, v in n_info.items()} == {k: type(v) for k, v in g_info.items()}
        if n_term or n_trunc:
            ends += 1
            assert "summary" in n_info
            for e in envs.values():
                e.reset()
    assert ends >= 2, "the comparison must cross episode ends"
    for e in envs.values():
        e.close()


@pytest.mark.parametrize("step_info", [True, False])
def test_vector_env_is_bit_identical_across_transports(address: str, step_info: bool) -> None:
    n = 24
    venvs = {t: FarmVectorEnv(n, "bursty", address=address, server_options=SHORT,
                              transport=t, step_info=step_info) for t in BOTH}
    (n_obs, n_info), (g_obs, g_info) = (v.reset(seed=3) for v in venvs.values())
    np.testing.assert_array_equal(_bits(n_obs), _bits(g_obs))
    _assert_same(n_info, g_info)
    rng = np.random.default_rng(9)
    saw_end = False
    for _ in range(14):
        acts = rng.integers(0, 7, size=n)
        nat = venvs["native"].step(acts)
        grp = venvs["grpcio"].step(acts)
        np.testing.assert_array_equal(_bits(nat[0]), _bits(grp[0]))
        np.testing.assert_array_equal(_bits(nat[1]), _bits(grp[1]))
        np.testing.assert_array_equal(nat[2], grp[2])
        np.testing.assert_array_equal(nat[3], grp[3])
        for arr_n, arr_g in zip(nat, grp, strict=True):
            if isinstance(arr_n, np.ndarray):
                assert arr_n.dtype == arr_g.dtype and arr_n.shape == arr_g.shape
        _assert_same(nat[4], grp[4])
        saw_end |= bool((nat[2] | nat[3]).any())
    assert saw_end, "the comparison must cross episode ends"
    for v in venvs.values():
        v.close()


def test_batch_stepper_split_and_rows_agree(address: str) -> None:
    # Native packed steps (one call, or three in flight) equal the rows of
    # grpcio's per-env replies.
    native = FarmClient(address, transport="native")
    grpcio = FarmClient(address, transport="grpcio")
    groups = {k: [f"nb{k}-{i}" for i in range(10)] for k in ("one", "three", "rows")}
    for ids in groups.values():
        for i, env_id in enumerate(ids):
            native.reset(env_id, 40 + i, scenario="spike", options=SHORT)
    one = native.batch_stepper(groups["one"], info=True)
    three = native.batch_stepper(groups["three"], info=True, parts=3)
    assert (one.parts, three.parts) == (1, 3)
    rng = np.random.default_rng(4)
    saw_end = False
    for _ in range(8):
        acts = rng.integers(0, 7, size=10)
        a = one.step(acts)
        b = three.step(acts)
        rows = grpcio.step_batch(groups["rows"], acts.tolist(), auto_reset=True)
        want_obs = np.array([list(r.observation) for r in rows], dtype=np.float32)
        for p in (a, b):
            np.testing.assert_array_equal(_bits(p.observations), _bits(want_obs))
            np.testing.assert_array_equal(_bits(p.rewards),
                                          _bits(np.array([r.reward for r in rows])))
            np.testing.assert_array_equal(p.truncated, [r.truncated for r in rows])
            np.testing.assert_array_equal(p.info[:, 0], [r.info.time_s for r in rows])
            ended = [i for i, r in enumerate(rows) if r.terminated or r.truncated]
            np.testing.assert_array_equal(p.ended, ended)
            for i, rep in zip(p.ended.tolist(), p.ended_replies, strict=True):
                assert list(rep.final_observation) == list(rows[i].final_observation)
                assert rep.info.summary == rows[i].info.summary
            saw_end |= bool(ended)
    assert saw_end
    # The native unpacked StepBatch gives the same messages as grpcio's.
    for ids in (groups["one"], groups["rows"]):
        for i, env_id in enumerate(ids):
            native.reset(env_id, 7 + i, scenario="steady", options=SHORT)
    x = native.step_batch(groups["one"], [2] * 10)
    y = grpcio.step_batch(groups["rows"], [2] * 10)
    for r, s in zip(x, y, strict=True):
        assert r.env_id.startswith("nbone-") and s.env_id.startswith("nbrows-")
        r.env_id = s.env_id = ""
        assert r.SerializeToString() == s.SerializeToString()
    native.close()
    grpcio.close()


def test_native_errors_carry_the_server_message(address: str) -> None:
    bad = "name: broken\narrivals: {kind: nope}\n"
    messages = {}
    for t in BOTH:
        env = FarmEnv(address=address, transport=t)
        with pytest.raises(InvalidArgumentError) as e:
            env.reset(seed=1, options={"scenario": bad})
        assert e.value.method == "Reset" and e.value.code == "INVALID_ARGUMENT"
        messages[t] = e.value.message
        env.close()
    assert "arrivals.kind" in messages["native"] and "nope" in messages["native"]
    assert messages["native"] == messages["grpcio"]
    client = FarmClient(address, transport="native")
    with pytest.raises(FarmRpcError) as e:
        client.step_streamed("no-such-env", 1)
    assert e.value.code == "NOT_FOUND" and "no-such-env" in e.value.message
    # The failed stream is replaced by a new one on the next call.
    client.reset("ne-0", 1, scenario="steady", options=SHORT)
    assert len(client.step_streamed("ne-0", 1).observation) == 17
    with pytest.raises(InvalidArgumentError, match="out of range"):
        client.step_streamed("ne-0", 99)
    assert client.step_streamed("ne-0", 1).info.time_s > 0
    assert client.stream_available
    client.close()
    client.close()  # idempotent
    with pytest.raises(rustfarm_gym.FarmError, match="closed"):
        client.step("ne-0", 1)


def test_native_unreachable_server_is_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServerUnreachableError, match=f"127.0.0.1:{port}.*refused"):
        FarmClient(f"127.0.0.1:{port}", connect_timeout_s=0.3, transport="native")


def test_native_client_is_shared_safely_across_threads(address: str) -> None:
    # Two threads step their own env over one native client; each gets the
    # trajectory it gets alone.
    client = FarmClient(address, transport="native")

    def run(env_id: str, seed: int, out: list[bytes]) -> None:
        client.reset(env_id, seed, scenario="bursty", options={"episode_steps": "30"})
        for k in range(25):
            out.append(client.step_streamed(env_id, k % 7).SerializeToString())

    outs: dict[str, list[bytes]] = {"t0": [], "t1": []}
    threads = [threading.Thread(target=run, args=(k, i, outs[k])) for i, k in enumerate(outs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    alone: list[bytes] = []
    run("t0", 0, alone)
    assert outs["t0"] == alone and len(alone) == 25
    assert outs["t1"] != alone and len(outs["t1"]) == 25
    client.close()


def test_final_infos_equal_gymnasium_add_info(address: str) -> None:
    # FarmVectorEnv builds final_obs / final_info a column at a time; it
    # must give what Gymnasium's _add_info gives from one dict per ended env.
    n = 12
    venv = FarmVectorEnv(n, "bursty", address=address, server_options=SHORT)
    venv.reset(seed=5)
    for _ in range(3):
        venv.step(np.full(n, 4))
    # Restart half of the envs, so that the other half ends alone.
    for i, env_id in enumerate(venv.env_ids[: n // 2]):
        venv.client.reset(env_id, 77 + i, scenario="bursty", options=SHORT)
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(8):
        res = venv._stepper.step(rng.integers(0, 7, size=n))
        ended = res.ended.tolist()
        if not ended:
            continue
        assert 0 < len(ended) < n or checked
        new: dict = {}
        venv._add_final_infos(new, ended, res.ended_replies)
        old: dict = {}
        for i, r in zip(ended, res.ended_replies, strict=True):
            old = venv._add_info(old, {"final_obs": np.array(r.final_observation,
                                                             dtype=np.float32),
                                       "final_info": venv._final_info(r)}, i)
        _assert_same(new, old)
        checked += 1
    assert checked >= 2
    venv.close()


# The whole test_env suite once more over grpcio (it runs over the default,
# native, transport in test_env itself).
_SUITE = [name for name, fn in vars(test_env).items()
          if name.startswith("test_") and callable(fn)
          and set(inspect.signature(fn).parameters) <= {"address"}]


@pytest.mark.parametrize("name", _SUITE)
def test_env_suite_over_grpcio(name: str, address: str,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUSTFARM_TRANSPORT", "grpcio")
    fn = getattr(test_env, name)
    fn(address) if inspect.signature(fn).parameters else fn()
