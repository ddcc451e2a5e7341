"""Starts the real `freshet` binary on free ports for each test."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("FRESHET_BIN", ROOT / "target" / "debug" / "freshet"))
DEADLINE_S = 30


def wait_for(probe, what, deadline_s=DEADLINE_S):
    started = time.monotonic()
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() - started > deadline_s:
            raise TimeoutError(f"{what} not within {deadline_s}s")
        time.sleep(0.02)


class Freshet:
    def __init__(self, data_dir: Path, config: str = ""):
        self.dir = data_dir
        self.config = data_dir / "freshet.toml"
        self.config.write_text(config)
        self.process = None
        self.kafka_port = 0
        self.http_port = 0
        self.log_path = data_dir / "freshet.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def start(self):
        ports = self.dir / "ports.json"
        if ports.exists():
            ports.unlink()
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(BINARY), "serve", "--config", str(self.config), "--data-dir", str(self.dir / "data"),
             "--kafka-listen", f"127.0.0.1:{self.kafka_port}", "--http-listen", f"127.0.0.1:{self.http_port}",
             "--ports-file", str(ports)],
            stdout=log, stderr=log)
        bound = json.loads(wait_for(lambda: ports.exists() and ports.read_text(), "the ports file"))
        # Keep the ports so a restart serves clients at the same address.
        self.kafka_port = int(bound["kafka"].rsplit(":", 1)[1])
        self.http_port = int(bound["http"].rsplit(":", 1)[1])

    def kill9(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=DEADLINE_S)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(timeout=DEADLINE_S) == 0, self.log_path.read_text()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def freshet():
    yield from serve("")


@pytest.fixture
def freshet_direct():
    """The server writing its log straight to the device, from memory."""
    yield from serve("[server]\ndirect_log_writes = true\n")


def serve(config: str):
    if not BINARY.exists():
        subprocess.run(["cargo", "build", "-p", "freshet"], cwd=ROOT, check=True)
    data_dir = Path(tempfile.mkdtemp(prefix="freshet-compat-"))
    server = Freshet(data_dir, config)
    server.start()
    yield server
    try:
        server.stop()
        assert "panicked" not in server.log_text(), server.log_text()
    finally:
        if server.process and server.process.poll() is None:
            server.process.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


def kcat(*args, input_text=None, timeout=DEADLINE_S):
    result = subprocess.run(["kcat", *args], input=input_text, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"kcat {' '.join(args)} failed: {result.stderr}"
    return result.stdout
