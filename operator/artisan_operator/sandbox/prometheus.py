"""A real Prometheus on loopback, scraping exporters whose values a test (or benchmark) sets.

- :class:`ControlledExporter` serves ``/metrics`` in the Prometheus text format from a dict the
  caller mutates (``exporter.set("name", 1.0, label="x")``), on 127.0.0.1 and a free port.
- :class:`PrometheusServer` starts Debian's ``/usr/bin/prometheus`` with a temporary config and data
  directory, scraping the given exporters every ``scrape_interval``; :meth:`wait_for_sample` polls the
  HTTP API until a query returns data (the first scrape lands a few seconds after start), and
  :meth:`stop` terminates it (also usable to simulate an outage; :meth:`start` again on the same port).

Nothing here sleeps blindly: everything polls with a deadline.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

PROMETHEUS_BINARY = "/usr/bin/prometheus"

LabelKey = tuple[tuple[str, str], ...]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ControlledExporter:
    """/metrics from values the caller sets; every series is exposed as an untyped sample."""

    def __init__(self) -> None:
        self._values: dict[str, dict[LabelKey, float]] = {}
        self._lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="exporter", daemon=True)

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values.setdefault(name, {})[tuple(sorted(labels.items()))] = value

    def add(self, name: str, amount: float, **labels: str) -> None:
        with self._lock:
            series = self._values.setdefault(name, {})
            key = tuple(sorted(labels.items()))
            series[key] = series.get(key, 0.0) + amount

    def remove(self, name: str) -> None:
        with self._lock:
            self._values.pop(name, None)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, series in sorted(self._values.items()):
                lines.append(f"# TYPE {name} untyped")
                for labels, value in sorted(series.items()):
                    text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                    shown = "NaN" if math.isnan(value) else repr(float(value))
                    lines.append(f"{name}{{{text}}} {shown}" if text else f"{name} {shown}")
        return "\n".join(lines) + "\n"

    def start(self) -> ControlledExporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> ControlledExporter:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def prometheus_config(targets: Sequence[str], scrape_interval: str) -> str:
    """A minimal config scraping ``targets`` (JSON is valid YAML)."""
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [{"job_name": "exporters", "static_configs": [{"targets": list(targets)}]}],
    }
    return json.dumps(config, indent=2)


class PrometheusServer:
    """Debian's Prometheus on 127.0.0.1:<free port> with a temporary config and TSDB."""

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        *,
        scrape_interval: str = "1s",
        binary: str = PROMETHEUS_BINARY,
        port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.binary = binary
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        if shutil.which(self.binary) is None:
            raise FileNotFoundError(f"{self.binary} not found (apt-get install prometheus)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config_text())
        log = (self.workdir / "prometheus.log").open("ab")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.running:
                raise RuntimeError(f"prometheus exited; see {self.workdir / 'prometheus.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"prometheus not ready within {timeout}s")
            time.sleep(0.1)
        return self

    def config_text(self) -> str:
        """The configuration file's text (a subclass may scrape other targets, e.g. file_sd)."""
        return prometheus_config(self.targets, self.scrape_interval)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def query(self, promql: str) -> list[dict[str, object]]:
        """The instant-vector result of ``promql`` (raises on an API error)."""
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            payload = json.loads(response.read())
        if payload.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {payload}")
        result: list[dict[str, object]] = payload["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The single value of ``promql`` now, or None when the result is empty."""
        result = self.query(promql)
        if not result:
            return None
        sample = result[0]["value"]
        assert isinstance(sample, list)
        return float(sample[1])

    def wait_for_sample(self, promql: str, timeout: float = 30.0, expect: float | None = None) -> float:
        """Poll until ``promql`` returns a value (equal to ``expect`` when given); return it."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while True:
            try:
                last = self.value(promql)
            except (urllib.error.URLError, OSError, RuntimeError):
                last = None
            if last is not None and (expect is None or math.isclose(last, expect)):
                return last
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{promql!r} had no sample{f' = {expect}' if expect is not None else ''} "
                    f"within {timeout}s (last {last})"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)
        self._process = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
