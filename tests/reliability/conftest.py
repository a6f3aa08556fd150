"""The reliability suite (`make reliability`): fault injection against real processes, bad input
and intruders. Each test records its figures with tests.reliability.figures.add."""

from __future__ import annotations

import pytest

from tests.reliability import figures


def pytest_sessionstart(session: pytest.Session) -> None:
    figures.reset()
