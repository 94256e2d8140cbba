from django.core.paginator import Page, Paginator


def get_page(object_list, per_page, number, *, count=None):
    """Django's Paginator.get_page(), without its COUNT query when the first page
    holds everything (a server's containers, most people's activity): the rows
    fetched for that page are the count. benchmark_pages: ~1 ms a page.
    `count`, if given, counts the rows instead of object_list.count(): the same
    rows without per-row annotations, which Django clones and strips to count (~2 ms)."""
    first = str(number or 1) == "1"
    if first:
        rows = list(object_list[: per_page + 1])  # one more tells whether there is a next page
        if len(rows) <= per_page:
            return Page(rows, 1, Paginator(rows, per_page))
    paginator = Paginator(object_list, per_page)
    if count:
        paginator.count = count()  # Paginator.count is a cached_property: this is its value
    return Page(rows[:per_page], 1, paginator) if first else paginator.get_page(number)
