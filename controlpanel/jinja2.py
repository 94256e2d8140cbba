"""The Jinja2 environment every page is rendered with.

Jinja2 rather than the Django template language: it compiles each template
to Python once. Rendering was most of every page's time; with Jinja2 the
server page went from ~25 to ~16 ms (manage.py benchmark_pages).
"""

from functools import lru_cache

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.middleware.csrf import get_token
from django.template.backends.utils import csrf_input
from django.template.defaultfilters import filesizeformat, pluralize
from django.templatetags.static import static
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.functional import SimpleLazyObject
from django.utils.timesince import timesince, timeuntil
from django.utils.timezone import get_default_timezone, localtime, now
from jinja2 import Environment
from markupsafe import Markup


def url(name, *args):
    return _reverse(get_urlconf(), get_script_prefix(), name, args)


@lru_cache(maxsize=4096)
def _reverse(urlconf, prefix, name, args):
    """reverse() takes ~30 µs here and a list page asks for a hundred links:
    benchmark_pages measured 3-4 ms on the admin server list without this cache."""
    return reverse(name, urlconf=urlconf, args=args)


@receiver(setting_changed)
def _forget_links(*, setting, **kwargs):
    if setting == "ROOT_URLCONF":  # when Django clears its own URL caches
        _reverse.cache_clear()


def strftime(value, fmt):
    """A date and time in the panel's time zone; empty for none."""
    return localtime(value, get_default_timezone()).strftime(fmt) if value else ""


def megabytes(value):
    """A size given in MB, as people read it (cheaper than filesizeformat: list pages show one a row)."""
    return f"{value / 1024:.1f} GB" if value >= 1024 else f"{value} MB"


def age(since):
    """How long since `since`, as a <time> the page counts on (live.js): "25 seconds", "3 minutes"."""
    seconds = max(int((now() - since).total_seconds()), 0)
    words = f"{seconds} second{pluralize(seconds)}" if seconds < 60 else timesince(since, depth=1)
    return Markup(f'<time class="age" datetime="{since.isoformat()}" data-seconds="{seconds}">{words}</time>')


def page_query(request, param, number):
    """The current query string with another page number: filters and search stay."""
    query = request.GET.copy()
    query[param] = number
    return "?" + query.urlencode()


def csrf(request):
    """A context processor: one CSRF token per page, as with Django's own
    template language (the Jinja2 backend masks a new one at every use)."""
    return {
        "csrf_input": SimpleLazyObject(lambda: csrf_input(request)),
        "csrf_token": SimpleLazyObject(lambda: get_token(request)),
    }


def environment(**options):
    env = Environment(**options)
    env.globals.update(url=url, static=static, page_query=page_query)
    env.filters.update(
        strftime=strftime, timesince=timesince, timeuntil=timeuntil, filesizeformat=filesizeformat, pluralize=pluralize,
        megabytes=megabytes, age=age,
    )
    return env
