"""A real FHIR R4 server for the integration tests: sekmet-fhir on a free loopback port.

sekmet-fhir lives in its own venv (``.sekmet/``, installed by ``.ci/run``) because it pins its own
fhir.resources and fastapi. The tests never install it: with no network at test time, a missing
server is a failed run with a clear message, never a skipped one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import ROOT, free_port

SEKMET = ROOT / ".sekmet" / "bin" / "sekmet"
INSTALL_HINT = "python3 -m venv .sekmet && .sekmet/bin/python -m pip install sekmet-fhir==0.1.1"
READY_TIMEOUT = 20.0  # seconds; it is ready in about 1 s
STOP_TIMEOUT = 10.0  # seconds before SIGTERM becomes SIGKILL (a failing rest-hook retries for ~7 s)
# Settings sekmet reads from the environment would override the file: never inherit them.
_SEKMET_ENV = ("SEKMET_CONFIG", "SEKMET_BASE_URL", "SEKMET_DB", "SEKMET_PUBLIC_URL", "SEKMET_PORT")


class FhirServerError(RuntimeError):
    """The FHIR server did not start or stop as asked; the message carries its log."""


class FhirServer:
    """One sekmet-fhir process; ``stop()`` and ``start()`` again keep its port and its data."""

    def __init__(self, executable: Path, workdir: Path, port: int) -> None:
        self.executable = executable
        self.workdir = workdir
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/fhir"
        self.data_dir = workdir / "data"
        self.log_path = workdir / "sekmet.log"
        self.settings_path = workdir / "settings.yaml"
        self._process: subprocess.Popen[bytes] | None = None
        self._write_settings()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return once ``/fhir/metadata`` answers."""
        if self.running:
            return
        env = {k: v for k, v in os.environ.items() if k not in _SEKMET_ENV}
        command = [str(self.executable), "serve", "-c", str(self.settings_path),
                   "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            # A session of its own, so stop() can end the whole process group by its id.
            self._process = subprocess.Popen(command, cwd=self.workdir, env=env, stdout=log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
        self._wait_ready()

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL if it lingers)."""
        process, self._process = self._process, None
        if process is None:
            return
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _write_settings(self) -> None:
        # The simulator would book and fulfil resources by itself; the traffic log would store
        # every request body in the server's database. Neither belongs in the adapter's tests.
        self.settings_path.write_text(
            "simulator:\n  enabled: false\n"
            "host: 127.0.0.1\n"
            f"port: {self.port}\n"
            f"data_dir: {self.data_dir}\n"
            f"base_url: {self.base_url}\n"
            "log_inbound: false\n"
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise FhirServerError(f"sekmet-fhir exited while starting; its log:\n{self.log_tail()}")
            if _answers(f"{self.base_url}/metadata"):
                return
            time.sleep(0.1)
        self.stop()
        raise FhirServerError(
            f"sekmet-fhir did not answer {self.base_url}/metadata within {READY_TIMEOUT:.0f} s; "
            f"its log:\n{self.log_tail()}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, sig)


@contextlib.contextmanager
def sekmet_in(workdir: Path) -> Iterator[FhirServer]:
    """sekmet-fhir on a free port with its data in ``workdir``, stopped after; a test fails (never
    skips) when it is not installed or does not start."""
    if not os.access(SEKMET, os.X_OK):
        pytest.fail(f"sekmet-fhir is not installed at {SEKMET}. The integration tests need a real "
                    f"FHIR server; .ci/run installs it, or run from {ROOT}: {INSTALL_HINT}",
                    pytrace=False)
    server = FhirServer(SEKMET, workdir, free_port())
    try:
        server.start()
    except FhirServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    """sekmet-fhir for the whole session, its data in a temporary folder."""
    with sekmet_in(tmp_path_factory.mktemp("sekmet")) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session per test, as the adapter keeps one per app."""
    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"Accept": "application/fhir+json"}
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
        yield session


async def put_patients(http: aiohttp.ClientSession, base: str, bundle: dict[str, Any]) -> None:
    """Put a scenario's Patients on the server, as a trust's FHIR server holds its children: the
    adapter names a child by the server's own Patient/{id}, found by NHS number (rules.md s.7)."""
    for entry in bundle["entry"]:
        patient = entry["resource"]
        if patient["resourceType"] == "Patient":
            async with http.put(f"{base}/Patient/{patient['id']}", json=patient) as resp:
                assert resp.status in (200, 201), await resp.text()
