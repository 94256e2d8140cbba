from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination

from controlpanel.pagination import Paginator


class Pages(PageNumberPagination):
    """DRF's numbered pages, refusing ?page= that is not a number (an empty one too) instead of giving the
    first, and counting no rows when the first page holds them all (controlpanel.pagination)."""

    django_paginator_class = Paginator

    def get_page_number(self, request, paginator):
        number = request.query_params.get(self.page_query_param)
        if number is not None and not number.isdigit():
            raise NotFound("Pages are numbered 1, 2, 3 ...")
        return super().get_page_number(request, paginator)
