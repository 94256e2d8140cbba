"""The panel's own error pages: what happened in words, and a way back, never a framework's bare page.

Django calls the handlers in controlpanel.urls (400, 403, 404, 500) and CSRF_FAILURE_VIEW;
ErrorPageMiddleware gives a 405 (a POST-only address asked with GET, as a reload after a
form does) the same page. The 500 page is rendered without the request: whatever failed
(the database, say) is not asked again.
"""

from django.http import HttpResponseServerError
from django.shortcuts import render
from django.template import loader

PAGES = {
    400: ("Bad request", "The panel could not make sense of that request."),
    403: ("Not allowed", "You are not allowed to do that."),
    404: ("Page not found", "There is nothing here: the address may be mistyped, or what it showed was removed."),
    405: ("Not from here", "This address only takes a form's button, not a visit or a reload. Go back to the page the form was on."),
    500: ("Something went wrong", "The panel failed to answer that request. It has been logged; try again in a moment."),
}
CSRF_TEXT = ("The form had expired or came from another site, so nothing was changed. Go back, reload the page, "
             "and send it again. (Cookies must be allowed for this site.)")


def page(request, status, text=None):
    title, default = PAGES[status]
    return render(request, "error.html", {"status": status, "title": title, "text": text or default}, status=status)


def bad_request(request, exception):
    return page(request, 400)


def permission_denied(request, exception):
    return page(request, 403)


def page_not_found(request, exception):
    return page(request, 404)


def server_error(request):
    title, text = PAGES[500]
    return HttpResponseServerError(loader.get_template("error.html").render({"status": 500, "title": title, "text": text, "user": None}))


def csrf_failure(request, reason=""):
    return page(request, 403, CSRF_TEXT)


class ErrorPageMiddleware:
    """A bare 405 (require_POST and its kind give no body) becomes the panel's page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code == 405 and not response.content:
            allowed = response.get("Allow", "")
            response = page(request, 405)
            response["Allow"] = allowed
        return response
