from collections.abc import Iterator

import pytest

from tests.telemetry.helpers import Captured, capture


@pytest.fixture
def captured() -> Iterator[Captured]:
    c = capture(prometheus=True)
    yield c
    c.close()
