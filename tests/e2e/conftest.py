from collections.abc import Iterator

import pytest

from tests.e2e.server import RunningGateway, start_gateway


@pytest.fixture(scope="session")
def gateway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    server = start_gateway(tmp_path_factory.mktemp("gateway"))
    yield server
    server.stop()
