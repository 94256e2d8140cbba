from django.core.paginator import Page, Paginator


def get_page(object_list, per_page, number):
    """Django's Paginator.get_page(), without its COUNT query when the first page
    holds everything (a server's containers, most people's activity): the rows
    fetched for that page are the count. benchmark_pages: ~1 ms a page."""
    if str(number or 1) != "1":
        return Paginator(object_list, per_page).get_page(number)
    rows = list(object_list[: per_page + 1])  # one more tells whether there is a next page
    paginator = Paginator(rows if len(rows) <= per_page else object_list, per_page)
    return Page(rows[:per_page], 1, paginator)
