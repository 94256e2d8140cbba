"""Domains: added on a server's page, changed, proven, removed; admins approve them."""

from functools import partial
from operator import attrgetter

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import admin_required
from controlpanel.forms import add_errors, refused
from controlpanel.pagination import get_page

from .. import services
from ..domain_names import normalize_domain
from ..forms import DomainForm, DomainSearchForm, DomainSettingsForm
from ..models import Domain
from .servers import page_of
from .shared import PAGE_SIZE, get_for_user, get_server_for_user, post_action, terminal_page


@terminal_page
@require_POST
def domain_add(request, server_id):
    server = get_server_for_user(request, server_id)
    form = DomainForm(request.POST)
    if form.is_valid():
        try:
            domain = services.domain_add(actor=request.user, server=server, request=request, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            if domain.is_active:
                messages.success(request, f"{domain.display_name} now points at this server.")
            elif domain.status == Domain.Status.DNS:
                messages.info(request, f"To prove {domain.display_name} is yours, add its TXT record below; it is routed once the record is found.")
            else:
                messages.info(request, f"{domain.display_name} is waiting for an administrator's approval.")
            return redirect(page_of(server))
    return refused(request, form, "domain", page_of(server))


@require_http_methods(["GET", "POST"])
def domain_edit(request, domain_id):
    domain = get_for_user(Domain, request, domain_id)
    form = DomainSettingsForm(request.POST or None, initial={"port": domain.port, "ssl": domain.ssl, "cloudflare": domain.cloudflare})
    if request.method == "POST" and form.is_valid():
        try:
            services.domain_update(actor=request.user, domain=domain, request=request, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"Saved {domain.display_name}.")
            return redirect("hosting:server_detail", server_id=domain.server_id)
    return render(request, "hosting/domain_edit.html", {"domain": domain, "form": form}, status=400 if form.errors else 200)


def _domain_action(service, done, back):
    """A removal or approval of a domain."""
    return post_action(partial(get_for_user, Domain), lambda request, domain: service(actor=request.user, domain=domain, request=request),
                       done, back, named=attrgetter("display_name"))


domain_remove = _domain_action(services.domain_remove, "Removed {name}.",
                               lambda domain: reverse("hosting:server_detail", args=[domain.server_id]))
domain_approve = admin_required(_domain_action(services.domain_approve, "Approved {name}.",
                                               lambda domain: reverse("hosting:admin_domain_list")))


@require_GET
def domain_check(request):
    """Live validation for the domain field: what adding the name would say, as a fragment."""
    try:
        check = services.check_name(user=request.user, name=request.GET.get("name", "")[:300])
    except ValidationError as error:
        return render(request, "hosting/domain_check.html", {"errors": error.messages, "check": None})
    return render(request, "hosting/domain_check.html", {"errors": [], "check": check})


@admin_required
@require_GET
def admin_domain_list(request):
    search = DomainSearchForm(request.GET)
    domains = Domain.objects.for_user(request.user).select_related("server", "server__owner")
    if search.is_valid():
        if q := search.cleaned_data["q"].strip().lower():
            try:
                q = normalize_domain(q, allow_wildcard=True)
            except ValidationError:
                pass
            domains = domains.filter(Q(name__icontains=q) | Q(server__owner__email__icontains=q) | Q(server__name__icontains=q))
        if search.cleaned_data["pending"]:
            domains = domains.pending()
    page = get_page(domains.order_by("name"), PAGE_SIZE, request.GET.get("page"))
    return render(request, "hosting/admin_domain_list.html", {"search": search, "page": page})


@require_POST
def domain_check_claim(request, domain_id):
    """The owner asks for their claim's TXT record to be looked up now."""
    domain = get_for_user(Domain, request, domain_id)
    asked, message = services.domain_check_request(actor=request.user, domain=domain)
    (messages.info if asked else messages.warning)(request, message)
    return redirect("hosting:server_detail", server_id=domain.server_id)
