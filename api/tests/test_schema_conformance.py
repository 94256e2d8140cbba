"""Schemathesis drives the API from its checked-in schema: whatever it sends, no 500, and
every answer (status, headers, body) is one the schema describes. On PostgreSQL (.ci/test)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from api import services
from controlpanel.wsgi import application
from hosting import services as hosting

from .conftest import SCHEMA

pytestmark = [pytest.mark.services, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def connection_kept():
    """As Django's test Client does: the app called in process must not close the test's
    database connection (and with it its transaction) when a request ends."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def admins_token(admin, alice, fake_docker, committed, caddy_answers):
    """An admin with a server, an app, a domain and a container to act on, and a write token."""
    admin.server_quota = alice.server_quota = 3
    admin.save(), alice.save()
    with committed():
        server = hosting.server_create(owner=admin, name="web")
    server.apps.create(name="blog", compose_file="services:\n  web:\n    image: busybox\n")
    server.domains.create(name="web.example.org")
    server.containers.create(docker_id="a" * 64, name="web-1", state="running", digest="x")
    return services.token_create(user=admin, name="fuzz", scope="write", days=7)[1]


schema = schemathesis.openapi.from_path(SCHEMA)
schema.app = application  # in process, through the whole middleware stack


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_its_schema_says(case, admins_token):
    # Not checked: that any well-formed request succeeds (most name objects that do not exist, or are busy),
    # and that every ill-formed one fails (unknown query parameters are ignored, as by most APIs).
    case.call_and_validate(headers={"Authorization": f"Bearer {admins_token}"},
                           excluded_checks=[positive_data_acceptance, negative_data_rejection])
