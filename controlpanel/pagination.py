from django.core import paginator
from django.utils.functional import cached_property


class Paginator(paginator.Paginator):
    """Django's, without its COUNT query when the first page holds everything (a server's
    containers, most people's activity): the rows fetched for that page are the count
    (benchmark_pages: ~1 ms a page). `count`, if given, counts the rows instead of
    object_list.count(): the same rows without per-row annotations, which Django clones
    and strips to count (~2 ms). The pages and the API (api.pagination) use it."""

    def __init__(self, object_list, per_page, *, count=None):
        super().__init__(object_list, per_page)
        self._count = count

    @cached_property
    def count(self):
        return self._count() if self._count else paginator.Paginator.count.func(self)

    def page(self, number):
        if str(number) != "1" or "count" in self.__dict__:
            return super().page(number)
        rows = list(self.object_list[: self.per_page + 1])  # one more tells whether there is a next page
        if len(rows) <= self.per_page:
            self.__dict__["count"] = len(rows)  # count's cached value: no query
        return self._get_page(rows[: self.per_page], 1, self)


def get_page(object_list, per_page, number, *, count=None):
    """Django's Paginator.get_page() with ours: a page number that is not one is the first."""
    pages = Paginator(object_list, per_page, count=count)
    return pages.page(1) if str(number or 1) == "1" else pages.get_page(number)
