"""The panel's own error pages (controlpanel.error_pages): words and a way back, at the right status."""

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from controlpanel import error_pages

pytestmark = pytest.mark.django_db


def test_a_missing_page_says_so_with_the_panel_around_it(as_alice):
    response = as_alice.get("/no/such/page/")
    page = response.content.decode()
    assert response.status_code == 404 and "Page not found" in page
    assert 'href="/">Back to the panel' in page and "Log out" in page  # the header: the rest of the panel in reach
    assert as_alice.get(reverse("hosting:server_detail", args=[999])).status_code == 404


def test_a_post_only_address_visited_says_what_to_do_instead(as_alice):
    response = as_alice.get(reverse("accounts:logout"))
    assert response.status_code == 405 and "POST" in response["Allow"]
    assert "not a visit or a reload" in response.content.decode()


def test_an_expired_form_says_nothing_changed(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(reverse("hosting:server_create"), {"name": "x"})
    assert response.status_code == 403 and "nothing was changed" in response.content.decode()


def test_a_failure_gives_the_panels_page_without_asking_the_request_anything():
    response = error_pages.server_error(RequestFactory().get("/"))
    page = response.content.decode()
    assert response.status_code == 500 and "Something went wrong" in page and "Log in" in page and "Traceback" not in page


def test_refused_and_malformed_requests_get_the_page_too(as_alice):
    request = RequestFactory().get("/")
    request.user = as_alice.get("/").wsgi_request.user
    assert "Not allowed" in error_pages.permission_denied(request, None).content.decode()
    assert error_pages.bad_request(request, None).status_code == 400
