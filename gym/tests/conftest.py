"""Shared fixtures: one real ``farmctl sim serve`` for the session.

No test is skipped when the binary is missing: the fixture fails with the
message of :func:`rustfarm_gym.find_farmctl` (build it with
``cargo build -p farmctl`` or set ``FARMCTL``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rustfarm_gym import SimServer


@pytest.fixture(scope="session")
def server() -> Iterator[SimServer]:
    with SimServer() as s:
        yield s


@pytest.fixture(scope="session")
def address(server: SimServer) -> str:
    return server.address
