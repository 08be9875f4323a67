"""Fixtures shared by the gRPC and REST client tests (each module defines its own ``server``)."""

from __future__ import annotations

import pytest


@pytest.fixture()
def behaviour(server):
    """The module's server behaviour, reset per test: no calls counted, ``flaky`` fails twice."""
    behaviour, _ = server
    behaviour.calls.clear()
    behaviour.fail_times = 2
    return behaviour
