"""The live API against its own OpenAPI schema: schemathesis generates requests for every operation
and fails on any 5xx, an undocumented status code or content type, or a body that breaks the schema.

Operations are walked in one test (schemathesis' lazy pytest loader does not run on pytest 9), with
a fixed number of examples per operation and generation mode so the run stays around a minute.
"""

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from api.keys import create_api_key
from api.models import Scope
from tests.factories import ActivityFactory, CompanyFactory, ContactFactory, PropertyDefinitionFactory

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
EXAMPLES = settings(
    max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)


def _check_operation(operation, mode: GenerationMode, headers: dict) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @EXAMPLES
    def run(case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


def test_api_conforms_to_its_schema(live_server, transactional_db, settings):
    settings.API_THROTTLE_RATE = ""  # hundreds of requests in a few seconds; throttling has its own test
    _key, plain = create_api_key(name="schemathesis", scopes=list(Scope.values))
    for contact in ContactFactory.create_batch(3, company=CompanyFactory()):
        ActivityFactory(contact=contact, external_id=f"seed-{contact.pk}")
    PropertyDefinitionFactory(key="plan", type="text")
    headers = {"Authorization": f"Bearer {plain}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/", headers=headers)

    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _check_operation(operation, mode, headers)
            except Exception as error:  # collect every operation's failure, then report them together
                failures.append(f"{operation.label} ({mode.value}): {error}")

    assert operations >= 10
    assert not failures, "\n\n".join(failures)
