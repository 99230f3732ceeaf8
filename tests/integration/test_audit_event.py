"""A ``--reveal`` on a real FHIR server (sekmet-fhir): the read lands there as an AuditEvent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

from fhir_engagement.store import SqliteStore
from tests.integration.conftest import FhirServer


def test_a_reveal_is_posted_as_an_audit_event(fhir_server: FhirServer, tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite3")
    store = SqliteStore(path)
    store.dead_letter("mllp:2575", "unusable", b"MSH|^~\\&|PAS|RXQ\r")
    store.commit()
    store.close()
    operator = f"tester-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_ENGAGEMENT_")}
    env |= {"FHIR_ENGAGEMENT_FHIR_BASE": fhir_server.base_url,
            "FHIR_ENGAGEMENT_OPERATOR": operator, "PYTHONWARNINGS": "error"}
    run = subprocess.run([sys.executable, "-m", "fhir_engagement", "deadletter", "show", "1",
                          "--reveal", "--store", path], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # the server took it: no warning
    with urllib.request.urlopen(f"{fhir_server.base_url}/AuditEvent?_count=200",
                                timeout=10) as resp:
        events = [e["resource"] for e in json.load(resp).get("entry", [])]
    (ours,) = [e for e in events if operator in e["agent"][0]["who"]["identifier"]["value"]]
    assert ours["type"]["code"] == "110110"
    assert ours["action"] == "R"
    assert ours["entity"][0]["what"]["identifier"]["value"] == "deadletter/1"
