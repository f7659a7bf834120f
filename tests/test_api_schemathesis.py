"""The live API against its own OpenAPI schema: schemathesis' CLI with every check (schemathesis.toml
lists the few operations where OpenAPI 3.0 cannot say what the server checks), generated requests
for every operation and stateful runs that follow the schema's links from a create to the created
object, bounded to a few examples per operation so CI spends about two minutes.

The long run (300 examples per operation, and the coverage phase too) is in the README.
"""

import json
import subprocess
import sys
from pathlib import Path

from api.keys import create_api_key
from api.models import Scope
from tests.factories import (
    ActivityFactory,
    CompanyFactory,
    ContactFactory,
    PropertyDefinitionFactory,
    SegmentFactory,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMATHESIS = Path(sys.executable).parent / "st"


def test_api_conforms_to_its_schema(live_server, transactional_db, settings, tmp_path):
    settings.API_THROTTLE_RATE = ""  # thousands of requests in a few minutes; throttling has its own test
    _key, plain = create_api_key(name="schemathesis", scopes=list(Scope.values))
    for contact in ContactFactory.create_batch(3, company=CompanyFactory()):
        ActivityFactory(contact=contact, external_id=f"seed-{contact.pk}")
    PropertyDefinitionFactory(key="plan", type="text")
    SegmentFactory(slug="seed-static", kind="static", rule=None)
    report = tmp_path / "report.json"

    command = [
        str(SCHEMATHESIS), "--config-file", str(ROOT / "schemathesis.toml"), "run",
        f"{live_server.url}/api/schema/", "--url", live_server.url,
        "-H", f"Authorization: Bearer {plain}",
        "--phases", "examples,fuzzing,stateful", "--max-examples", "5", "--seed", "24", "--workers", "1",
        "--generation-database", "none", "--wait-for-schema", "120", "--request-timeout", "60",
        "--no-color", "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)

    summary = json.loads(report.read_text())
    assert run.returncode == 0, run.stdout[-30_000:]
    assert summary["operations"]["tested"] >= 45
    assert summary["failures"] == []
    assert summary["errors"] == []
    assert summary["phases"]["fuzzing"]["status"] == summary["phases"]["stateful"]["status"] == "success"
