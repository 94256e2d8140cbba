from django.core import paginator


class Paginator(paginator.Paginator):
    """Django's paginator without its COUNT query when everything fits on the
    first page (a server's containers, most people's activity): the rows
    fetched for that page are the count."""

    def get_page(self, number):
        if str(number or 1) != "1":
            return super().get_page(number)
        rows = list(self.object_list[: self.per_page + 1])  # one more tells whether there is a next page
        if len(rows) <= self.per_page:
            self.count = len(rows)
        return self._get_page(rows[: self.per_page], 1, self)
