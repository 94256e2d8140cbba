"""Query helpers the apps share."""

from django.db.models import Count, IntegerField, Subquery
from django.db.models.functions import Coalesce


def count_of(queryset, per):
    """How many rows of `queryset` each outer row has, `per` being the field that
    points at it (filtered with OuterRef). A subquery, so PostgreSQL counts only
    for the rows a page shows instead of joining and grouping every row."""
    counted = queryset.order_by().values(per).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)
