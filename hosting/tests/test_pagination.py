"""The panel's paginator: Django's pages, with no COUNT query when one page holds everything."""

import pytest
from django.core import paginator
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ActivityLog
from controlpanel.pagination import get_page


def shape(page):
    return list(page), page.number, page.has_previous(), page.has_next(), page.paginator.count, page.paginator.num_pages


@pytest.mark.parametrize("size", [0, 1, 5, 6, 11])
@pytest.mark.parametrize("number", [None, "", 1, "1", "2", "3", "abc", "0", "-1", "1.5", "99"])
def test_same_pages_as_djangos(size, number):
    rows = list(range(size))
    assert shape(get_page(rows, 5, number)) == shape(paginator.Paginator(rows, 5).get_page(number))


@pytest.mark.django_db
@pytest.mark.parametrize(("rows", "queries"), [(0, 1), (5, 1), (6, 2)])
def test_count_query_only_past_one_page(rows, queries):
    ActivityLog.objects.bulk_create(ActivityLog(action="login", message=f"m{n}") for n in range(rows))
    with CaptureQueriesContext(connection) as context:
        page = get_page(ActivityLog.objects.all(), 5, None)
        assert len(page) == min(rows, 5)
        assert page.paginator.num_pages == (2 if rows > 5 else 1)
    assert len(context.captured_queries) == queries
