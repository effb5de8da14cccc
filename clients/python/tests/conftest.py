import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from server import Server  # noqa: E402

import tagcache  # noqa: E402


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request):
    return request.param


@pytest.fixture
def tc(server, protocol):
    c = tagcache.TagCache(port=server.port, protocol=protocol)
    yield c
    c.close()
