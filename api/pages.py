"""The API tokens page: one's own tokens, made and revoked."""

from functools import partial

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import admin_required
from controlpanel.forms import add_errors, refused, restored

from . import services
from .forms import TokenForm
from .models import ApiToken

NEW_SECRET_KEY = "api_token_secret"  # in the session until the next page shows it, once


@require_GET
def token_list(request):
    make = partial(TokenForm, user=request.user)
    context = {
        "tokens": services.tokens_of(request.user),
        "form": restored(request, "token", make) or make(),
        "secret": request.session.pop(NEW_SECRET_KEY, None),
    }
    return render(request, "api/token_list.html", context)


@require_GET
def docs(request):
    """The API, browsable: Swagger UI over /api/schema/."""
    return render(request, "api/docs.html")


@require_POST
def token_create(request):
    form = TokenForm(request.POST, user=request.user)
    if form.is_valid():
        try:
            token, secret = services.token_create(user=request.user, request=request, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            request.session[NEW_SECRET_KEY] = secret
            messages.success(request, f"Made the token “{token.name}”. Copy it now: it is not shown again.")
            return redirect("api:token_list")
    return refused(request, form, "token", reverse("api:token_list"))


@require_POST
def token_revoke(request, token_id):
    token = get_object_or_404(request.user.api_tokens, pk=token_id)
    services.token_revoke(actor=request.user, token=token, request=request)
    messages.success(request, f"Revoked the token “{token.name}”: it no longer works.")
    return redirect("api:token_list")


@admin_required
@require_POST
def admin_token_revoke(request, token_id):
    """An administrator revokes anyone's token, from that user's page."""
    token = get_object_or_404(ApiToken.objects.select_related("user"), pk=token_id)
    services.token_revoke(actor=request.user, token=token, request=request)
    messages.success(request, f"Revoked {token.user.email}'s token “{token.name}”: it no longer works.")
    return redirect("accounts:user_detail", user_id=token.user_id)
