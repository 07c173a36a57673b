"""The service as it runs in a pod: gunicorn with titanic/gunicorn.conf.py, on a free loopback port.

    with Gunicorn(tmp_path, database_url=url, workers=3) as server:
        requests.get(server.url + "/people", headers={"X-Forwarded-Proto": "https"})

start() returns once /health answers and every worker has forked; stop() is a graceful SIGTERM
(SIGKILL after a timeout). Any environment variable of the project can be overridden with env=.
"""

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from tests.harness import REPO, project_env
from tests.harness.net import free_port

HTTPS = {"X-Forwarded-Proto": "https"}  # TLS ends at the load balancer in production


class Gunicorn:
    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str | None = None,
        workers: int | None = None,
        app: str = "titanic.wsgi",
        name: str = "app",
        env: Mapping[str, str] | None = None,
    ):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"gunicorn-{name}-{self.port}.log"
        self.args = [sys.executable, "-m", "gunicorn", "--config", "titanic/gunicorn.conf.py", app]
        self.env = project_env(
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            LOG_FORMAT="json",
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            PROMETHEUS_MULTIPROC_DIR=str(workdir / f"metrics-{name}-{self.port}"),
        )
        if database_url:
            self.env["DATABASE_URL"] = database_url
        if workers:
            self.env["GUNICORN_WORKERS"] = str(workers)
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> "Gunicorn":
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_until_serving(timeout)
        except BaseException:
            self.stop()  # never leave a server behind
            raise
        return self

    def stop(self, timeout: float = 40) -> int | None:
        """SIGTERM (gunicorn's graceful shutdown), SIGKILL if it outlasts the timeout; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> "Gunicorn":
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def _wait_until_serving(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        expected = int(self.config()["workers"])
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.request("GET", "/health", check=False)[0] == 200 and len(self.workers()) >= expected:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: gunicorn is not serving:\n{self.log_path.read_text()[-3000:]}")

    def config(self) -> dict[str, str]:
        """The settings gunicorn resolves from the config file and this environment."""
        printed = subprocess.run(
            [*self.args[:-1], "--print-config", self.args[-1]],
            cwd=REPO,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        settings = {}
        for line in printed.splitlines():
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
        return settings

    def workers(self) -> list[int]:
        """The pids of the master's children (the workers)."""
        assert self.process is not None
        pid = self.process.pid
        try:
            return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def log_lines(self) -> list[str]:
        return [line for line in self.log_path.read_text().splitlines() if line.strip()]

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        connection: http.client.HTTPConnection | None = None,
        check: bool = True,
    ) -> tuple[int, bytes]:
        """One request over HTTPS as the load balancer forwards it; (status, body). check: 4xx/5xx raise."""
        own = connection is None
        connection = connection or self.connect()
        try:
            connection.request(method, path, body=body, headers={**HTTPS, **(headers or {})})
            response = connection.getresponse()
            data = response.read()
        finally:
            if own:
                connection.close()
        if check and response.status >= 400:
            raise RuntimeError(f"{self.name}: {method} {path} answered {response.status}: {data[:300]!r}")
        return response.status, data

    def worker_serving(self, connection: http.client.HTTPConnection) -> int:
        """The pid of the worker holding the server end of this (already answered) keep-alive connection."""
        assert connection.sock is not None
        client_port = connection.sock.getsockname()[1]
        inode = None
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            remote_port = int(fields[2].split(":")[1], 16)
            if local_port == self.port and remote_port == client_port:
                inode = fields[9]
        if inode is None:
            raise RuntimeError("the server end of the connection is not in /proc/net/tcp")
        for pid in self.workers():
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd) == f"socket:[{inode}]":
                            return pid
        raise RuntimeError("no worker holds the connection")

    def get_from_every_worker(
        self, path: str, headers: Mapping[str, str] | None = None, max_connections: int = 64
    ) -> list[tuple[int, int, bytes]]:
        """GET path on a new connection each time until every worker has answered at least once.

        Returns every answer as (worker pid, status, body). The kernel spreads new connections over
        the workers unevenly, hence several tries; raises if a worker never answers.
        """
        workers, answers = set(self.workers()), []
        for _ in range(max_connections):
            connection = self.connect()
            try:
                status, body = self.request("GET", path, headers=headers, connection=connection, check=False)
                answers.append((self.worker_serving(connection), status, body))
            finally:
                connection.close()
            if {pid for pid, _, _ in answers} >= workers:
                return answers
        raise RuntimeError(f"{len(workers)} workers, answers from {len({pid for pid, _, _ in answers})} only")
