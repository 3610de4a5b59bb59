"""Fixtures for the core SDK tests: a started FakeCloud and a fast reconnect policy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from arkor_nb import ReconnectPolicy
from tests.sdk.fake_cloud import FakeCloud


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud() as server:
        yield server


@pytest.fixture
def fast() -> ReconnectPolicy:
    """Small delays so reconnect tests take milliseconds, not seconds."""
    return ReconnectPolicy(initial_delay=0.01, max_delay=0.05)
