"""A real server with the module, per test: --loadmodule, a free port, a temp dir.

TAGCACHE_SERVER (default /usr/bin/redis-server) and TAGCACHE_MODULE (default
<repo>/target/debug/libtagcache.so) choose the binaries, as for the Rust integration tests."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[3]


def server_binary() -> str:
    return os.environ.get("TAGCACHE_SERVER", "/usr/bin/redis-server")


def module_path() -> str:
    p = os.environ.get("TAGCACHE_MODULE", str(ROOT / "target/debug/libtagcache.so"))
    if not os.path.exists(p):
        raise RuntimeError(f"module {p} not found: run `cargo build` first")
    return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *extra: str):
        self.dir = tempfile.mkdtemp(prefix="tagcache-py-")
        for attempt in range(5):
            self.port = _free_port()
            self.proc = subprocess.Popen(
                [server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", self.dir, "--save", "", "--appendonly", "no",
                 "--logfile", "server.log", "--loadmodule", module_path(), *extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready():
                return
            self.proc.kill()
            self.proc.wait()
        log = Path(self.dir, "server.log")
        raise RuntimeError("server did not start: " + (log.read_text()[-2000:] if log.exists() else "no log"))

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                c = redis.Redis(port=self.port, socket_timeout=1)
                c.ping()
                c.close()
                return True
            except redis.ConnectionError:
                time.sleep(0.01)
        return False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
