"""``check_vector_env``: the vector counterpart of Gymnasium's ``check_env``
(which only accepts a single ``gymnasium.Env``)."""

from __future__ import annotations

import numpy as np
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode, VectorEnv


def check_vector_env(venv: VectorEnv, *, seed: int = 123, max_steps: int = 400) -> None:
    """Check the vector API contract; raises ``AssertionError`` on a violation.

    Spaces are batched versions of the single spaces; ``reset`` and ``step``
    return data of the right shapes and dtypes inside the spaces; a seed
    reproduces observations and rewards; returned arrays are fresh objects;
    with ``SAME_STEP`` autoreset, each ended episode reports ``final_obs``
    and ``final_info`` and the returned observation is a new episode's.
    """
    n = venv.num_envs
    assert venv.observation_space.shape == (n, *venv.single_observation_space.shape)
    assert venv.action_space.shape == (n,)
    mode = venv.metadata.get("autoreset_mode")
    assert isinstance(mode, AutoresetMode), "metadata['autoreset_mode'] must be set"

    obs1, info1 = venv.reset(seed=seed)
    assert isinstance(info1, dict)
    assert obs1.dtype == venv.observation_space.dtype
    assert venv.observation_space.contains(obs1), "reset observation outside the space"
    venv.action_space.seed(seed)
    actions = [venv.action_space.sample() for _ in range(5)]
    traj1 = [venv.step(a) for a in actions]
    obs2, _ = venv.reset(seed=seed)
    assert data_equivalence(obs1, obs2), "reset(seed) is not deterministic"
    assert obs1 is not obs2
    traj2 = [venv.step(a) for a in actions]
    for s1, s2 in zip(traj1, traj2, strict=True):
        assert data_equivalence(s1[:4], s2[:4]), "steps after reset(seed) differ"
    for obs, rew, term, trunc, info in traj1:
        assert obs.shape == venv.observation_space.shape
        assert venv.observation_space.contains(obs), "step observation outside the space"
        assert rew.shape == (n,) and np.issubdtype(rew.dtype, np.floating)
        assert term.shape == (n,) and term.dtype == np.bool_
        assert trunc.shape == (n,) and trunc.dtype == np.bool_
        assert isinstance(info, dict)
    assert traj1[0][0] is not traj1[1][0], "observations must not share memory"

    # Run until every sub-environment has ended an episode at least once.
    ended = np.zeros(n, dtype=bool)
    venv.reset(seed=seed)
    for _ in range(max_steps):
        obs, _, term, trunc, info = venv.step(venv.action_space.sample())
        done = term | trunc
        if done.any() and mode == AutoresetMode.SAME_STEP:
            assert "final_obs" in info and "final_info" in info
            for i in np.flatnonzero(done):
                assert info["_final_obs"][i]
                assert venv.single_observation_space.contains(info["final_obs"][i])
            assert venv.observation_space.contains(obs)
        ended |= done
        if ended.all():
            break
    assert ended.all(), f"some sub-environments never ended an episode in {max_steps} steps"
