"""The helpers every page is rendered with (controlpanel/jinja2.py)."""

from datetime import UTC, datetime

import pytest

from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from django.urls import path, reverse, set_script_prefix, set_urlconf

from controlpanel.jinja2 import page_query, strftime, url
from hosting.gateway import logs
from hosting.worker import monitor
from hosting.models import ContainerSnapshot


def test_url_is_djangos_reverse_under_any_script_prefix():
    assert url("hosting:server_detail", 7) == reverse("hosting:server_detail", args=[7]) == "/servers/7/"
    set_script_prefix("/panel/")
    try:
        assert url("hosting:server_detail", 7) == "/panel/servers/7/"  # not the cached answer for "/"
    finally:
        set_script_prefix("/")
    assert url("hosting:server_list") == reverse("hosting:server_list")


# A second URLconf: this module, where "home" lives at another path.
urlpatterns = [path("elsewhere/", lambda request: HttpResponse(), name="home")]


def test_url_follows_a_per_request_urlconf_and_a_changed_root_urlconf():
    assert url("home") == "/"
    set_urlconf(__name__)  # what a middleware setting request.urlconf does
    try:
        assert url("home") == "/elsewhere/"
    finally:
        set_urlconf(None)
    with override_settings(ROOT_URLCONF=__name__):
        assert url("home") == "/elsewhere/"
    assert url("home") == "/"


@override_settings(TIME_ZONE="Europe/Berlin")
def test_strftime_in_the_panels_time_zone():
    assert strftime(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), "%H:%M %Z") == "14:00 CEST"
    assert strftime(None, "%H:%M") == ""


def test_page_query_keeps_the_filters():
    request = RequestFactory().get("/admin/servers/", {"q": "a&b", "page": "3"})
    assert page_query(request, "page", 4) == "?q=a%26b&page=4"


@pytest.mark.django_db
def test_control_characters_from_inside_a_server_are_shown_never_sent_raw(as_alice, server):
    """A container named with an escape sequence and a bell: HTML escaping leaves both
    to the browser; the monitor stores their symbols instead, and so the page shows them."""
    _, fields = monitor.snapshot_fields({"Id": "c" * 64, "Names": ["/evil\x1b[2J\x07name"], "Image": "img\x1b]0;title\x07",
                                         "State": "running", "Status": "Up\x08\x08\x08Down"})  # as the monitor stores it
    ContainerSnapshot.objects.create(server=server, docker_id="c" * 64, digest="x", **fields)
    page = as_alice.get(reverse("hosting:server_detail", args=[server.pk])).content.decode()
    assert "evil␛[2J␇name" in page and "img␛]0;title␇" in page
    assert not any(char in page for char in "\x1b\x07\x08")
    assert logs.parse_line(b"2026-12-04T10:00:00.000000000Z red \x1b[31mtext\x07") == ("2026-12-04 10:00:00", "red ␛[31mtext␇")
