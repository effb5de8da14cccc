"""examples/endpoint_cache.py runs against a real server and shows one render per herd."""

import subprocess
import sys
from pathlib import Path


def test_endpoint_cache_example(server):
    ex = Path(__file__).resolve().parents[1] / "examples" / "endpoint_cache.py"
    out = subprocess.run([sys.executable, str(ex), server.url], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "renders after a herd of 20: 1" in out
    assert "'price': 25} renders: 2" in out
