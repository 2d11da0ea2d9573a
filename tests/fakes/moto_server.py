"""moto's EC2 API emulator in server mode, started on 127.0.0.1 for the tests.

moto lives in a virtual environment of its own (scripts/test-deps.d/40-moto.sh makes it):
botocore needs python-dateutil < 3 while the kubernetes client needs >= 3, so moto cannot
share the project's venv. The server speaks EC2's real query protocol over HTTP; tests
reach it through libcloud's EC2 driver pointed at ``http://127.0.0.1:PORT``.

    with MotoServer.start() as moto:
        moto.url            # http://127.0.0.1:PORT
        moto.ec2("DescribeInstances")   # a raw, signed-anyhow query, for assertions
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

ENV_VENV = "ORCHESTRATOR_MOTO_VENV"
#: answers of ``ec2()`` come without XML namespaces (moto's differs from AWS's by a '/')
EC2_NS = ""


def moto_venv() -> Path:
    """Where 40-moto.sh puts moto's virtual environment."""
    explicit = os.environ.get(ENV_VENV)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "orchestrator" / "moto-venv"


def moto_python() -> Path | None:
    """The interpreter of moto's venv, or None when moto is not installed there."""
    python = moto_venv() / "bin" / "python"
    if not python.exists():
        return None
    done = subprocess.run([str(python), "-c", "import moto.server, flask"],
                          capture_output=True, timeout=120, check=False)
    return python if done.returncode == 0 else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """One moto server process; ``stop()`` ends it (by its own pid)."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path):
        self.process, self.port, self.log = process, port, log
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    def start(cls, log_dir: Path | None = None, timeout: float = 60.0) -> MotoServer:
        python = moto_python()
        if python is None:
            raise RuntimeError(f"moto is not installed in {moto_venv()} "
                               "(run scripts/test-deps.d/40-moto.sh)")
        port = free_port()
        log = (log_dir or Path("/tmp")) / f"moto-{port}.log"
        handle = open(log, "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        process = subprocess.Popen([str(python), "-m", "moto.server", "-H", "127.0.0.1",
                                    "-p", str(port)], stdout=handle, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
        handle.close()
        server = cls(process, port, log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"moto exited ({process.returncode}): {server.log_tail()}")
            try:
                server.ec2("DescribeRegions")
                return server
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        server.stop()
        raise RuntimeError(f"moto did not answer within {timeout:.0f} s: {server.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def ec2(self, action: str, region: str = "us-east-1", **params: str) -> ET.Element:
        """One EC2 query action; the parsed XML answer (moto does not check signatures,
        only that the Authorization header names a region)."""
        data = urllib.parse.urlencode({"Action": action, "Version": "2016-11-15",
                                       **params}).encode()
        request = urllib.request.Request(self.url + "/", data=data, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20240101/"
                             f"{region}/ec2/aws4_request, SignedHeaders=host, Signature=x"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            root = ET.fromstring(answer.read())
        for element in root.iter():
            element.tag = element.tag.rsplit("}", 1)[-1]
        return root

    def tagged(self, tag_key: str, value: str | None = None) -> list[dict]:
        """Every resource moto holds with this tag (DescribeTags): type, id, value."""
        params = {"Filter.1.Name": "key", "Filter.1.Value.1": tag_key}
        if value is not None:
            params.update({"Filter.2.Name": "value", "Filter.2.Value.1": value})
        root = self.ec2("DescribeTags", **params)
        return [{"type": item.findtext(f"{EC2_NS}resourceType"),
                 "id": item.findtext(f"{EC2_NS}resourceId"),
                 "value": item.findtext(f"{EC2_NS}value")}
                for item in root.iter(f"{EC2_NS}item")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
