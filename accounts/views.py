from functools import partial

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from controlpanel.forms import add_errors, refused, restored
from controlpanel.pagination import get_page

from . import forms, services, throttling
from .activity import Action
from .decorators import admin_required
from .models import ActivityLog, User, normalize_email

PAGE_SIZE = 50


def _page(request, queryset):
    return get_page(queryset, PAGE_SIZE, request.GET.get("page"))


class LoginView(auth_views.LoginView):
    """Email + password; every attempt is counted before it is tried (see throttling)."""

    form_class = forms.LoginForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = True
    http_method_names = ["get", "post", "head", "options"]  # FormView would take PUT as POST

    def post(self, request, *args, **kwargs):
        email = normalize_email(request.POST.get("username", ""))[:254]
        client = throttling.client_key(services.client_ip(request))
        if not throttling.login_allowed(request, email, client):
            services.visitor_activity(action=Action.LOGIN_THROTTLED, request=request, typed=email)
            return _too_many(request, "Too many failed logins for this account. Wait a few minutes and try again.")
        response = super().post(request, *args, **kwargs)
        if request.user.is_authenticated:
            throttling.login_succeeded(request, response, email, client)
        return response


class _ResetMinutes:
    """How long a reset link works, for the pages and the email that say it."""

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "reset_minutes": settings.PASSWORD_RESET_TIMEOUT // 60}


class PasswordForgotView(_ResetMinutes, auth_views.PasswordResetView):
    """Asks for a reset link by email: the same reply whether an account has the address or
    not. Counted per client (too many: a 429) and per address (too many: no more mails)."""

    form_class = forms.PasswordForgotForm
    template_name = "accounts/password_forgot.html"
    subject_template_name = "accounts/password_reset_subject.txt"
    email_template_name = "accounts/password_reset_email.txt"
    success_url = reverse_lazy("accounts:password_forgot_sent")
    http_method_names = ["get", "post", "head", "options"]

    def post(self, request, *args, **kwargs):
        if not settings.EMAIL_URL:
            return self.get(request, *args, **kwargs)
        client = throttling.client_key(services.client_ip(request))
        if throttling.hit("reset-client", client, window=settings.THROTTLE_WINDOW) > settings.PASSWORD_RESET_LIMIT * 3:
            return _too_many(request, "Too many password reset requests from your address. Wait a few minutes and try again.")
        email = normalize_email(request.POST.get("email", ""))[:254]
        if throttling.hit("reset", email, window=settings.THROTTLE_WINDOW) > settings.PASSWORD_RESET_LIMIT:
            return redirect(self.success_url)  # as if sent: nothing said of the address
        return super().post(request, *args, **kwargs)

    @property
    def extra_email_context(self):
        return {"reset_minutes": settings.PASSWORD_RESET_TIMEOUT // 60}

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "email_enabled": bool(settings.EMAIL_URL)}


class PasswordForgotSentView(_ResetMinutes, auth_views.PasswordResetDoneView):
    template_name = "accounts/password_forgot_sent.html"


@method_decorator(login_not_required, name="dispatch")
class PasswordResetView(_ResetMinutes, auth_views.PasswordResetConfirmView):
    """The emailed link: a new password, once, within PASSWORD_RESET_MINUTES; every session ends."""

    form_class = forms.SetPasswordForm
    template_name = "accounts/password_reset.html"
    http_method_names = ["get", "post", "head", "options"]

    def dispatch(self, request, *args, **kwargs):
        if request.method.lower() not in self.http_method_names:  # Django's answers a bad link before it checks
            return self.http_method_not_allowed(request, *args, **kwargs)
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form):
        services.password_reset(request=self.request, user=self.user, password=form.cleaned_data["password1"])
        del self.request.session[auth_views.INTERNAL_RESET_SESSION_TOKEN]
        messages.success(self.request, "Your password was changed, and every session of your account was signed out. Log in with it now.")
        return redirect("accounts:login")


def _too_many(request, message):
    return render(request, "accounts/too_many.html", {"message": message}, status=429)


@login_not_required
@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = forms.SignupForm(request.POST or None, initial={"code": request.GET.get("code", "")})
    if request.method == "GET":
        return render(request, "accounts/signup.html", {"form": form})
    client = throttling.client_key(services.client_ip(request))
    if throttling.count("signup", client) >= settings.SIGNUP_FAILURE_LIMIT:
        return _too_many(request, "Too many wrong registration codes or refused sign-ups from your address. Wait a few minutes and try again.")
    if form.is_valid():
        try:
            user = services.user_signup(
                code=form.cleaned_data["code"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
                request=request,
            )
        except ValidationError as error:
            add_errors(form, error)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, "Welcome! Your account is ready.")
            return redirect("home")
    # Every refusal counts, whatever it was for: the code is checked before the email.
    throttling.hit("signup", client, window=settings.THROTTLE_WINDOW)
    services.visitor_activity(action=Action.SIGNUP_FAILED, request=request, typed=request.POST.get("code", ""))
    return render(request, "accounts/signup.html", {"form": form})


def _account_page(request, *, form=None):
    context = {
        "form": form or forms.PasswordChangeForm(request.user),
        "key_form": restored(request, "ssh_key", forms.SshKeyForm) or forms.SshKeyForm(),
        "keys": request.user.ssh_keys.all(),
        "host_key": services.ssh_host_key_fingerprint(),
        "ssh_address": services.ssh_address(request),
        # The ~/.ssh/config example names one of the user's own servers.
        "ssh_example": request.user.servers.filter(deleted_at__isnull=True).order_by("pk").first(),
        "activity": _page(request, request.user.activity.all()),
    }
    return render(request, "accounts/account.html", context)


@require_http_methods(["GET", "POST"])
def account(request):
    if request.method == "GET":
        return _account_page(request)
    form = forms.PasswordChangeForm(request.user, request.POST)
    if form.is_valid():
        services.password_change(request=request, user=request.user, password=form.cleaned_data["password1"])
        messages.success(request, "Your password was changed. Your other sessions were signed out.")
        return redirect("accounts:account")
    return _account_page(request, form=form)


@require_POST
def ssh_key_add(request):
    form = forms.SshKeyForm(request.POST)
    if form.is_valid():
        try:
            key = services.ssh_key_add(user=request.user, request=request, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"Added the key “{key.name}” ({key.fingerprint}).")
            return redirect("accounts:account")
    return refused(request, form, "ssh_key", reverse("accounts:account"))


@require_POST
def ssh_key_remove(request, key_id):
    key = get_object_or_404(request.user.ssh_keys, pk=key_id)
    services.ssh_key_remove(user=request.user, key=key, request=request)
    messages.success(request, f"Removed the key “{key.name}”: its SSH sessions end within seconds.")
    return redirect("accounts:account")


# Admin pages -----------------------------------------------------------------

@admin_required
@require_POST
def registration_code_generate(request):
    form = forms.RegistrationCodeForm(request.POST)
    if form.is_valid():
        code = services.registration_code_generate(
            admin=request.user, max_uses=form.cleaned_data["max_uses"], request=request
        )
        messages.success(request, f"New registration code {code.code} is ready.")
    else:
        messages.error(request, "Sign-up limit: " + " ".join(form.errors["max_uses"]))
    return redirect("home")


@admin_required
@require_POST
def registration_code_revoke(request):
    if services.registration_code_revoke(admin=request.user, request=request):
        messages.success(request, "Your registration code was revoked.")
    else:
        messages.info(request, "You had no registration code to revoke.")
    return redirect("home")


@admin_required
@require_GET
def user_list(request):
    search = forms.UserSearchForm(request.GET)
    users = User.objects.all()
    ordering = "email"
    if search.is_valid():
        if q := search.cleaned_data["q"].strip():
            users = users.filter(email__icontains=q)
        ordering = search.ordering()
    page = get_page(services.users_with_counts(users).order_by(ordering, "pk"), PAGE_SIZE, request.GET.get("page"), count=users.count)
    return render(request, "accounts/user_list.html", {"search": search, "page": page})


@admin_required
@require_http_methods(["GET", "POST"])
def user_create(request):
    form = forms.UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_create(
                actor=request.user,
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
                is_admin=form.cleaned_data["is_admin"],
                request=request,
            )
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"Created {user.email}.")
            return redirect("accounts:user_detail", user_id=user.pk)
    return render(request, "accounts/user_create.html", {"form": form})


def _user_detail_page(request, user, *, form=None, status=200):
    context = {
        "subject": user,
        "form": form or forms.UserUpdateForm(initial={f: getattr(user, f) for f in forms.UserUpdateForm.base_fields}),
        "password_form": restored(request, "set_password", partial(forms.SetPasswordForm, user)) or forms.SetPasswordForm(user),
        "activity": user.activity.all()[:20],
        "delete_blockers": services.user_delete_blockers(user),
    }
    return render(request, "accounts/user_detail.html", context, status=status)


@admin_required
@require_http_methods(["GET", "POST"])
def user_detail(request, user_id):
    user = get_object_or_404(User, pk=user_id)
    if request.method == "GET":
        return _user_detail_page(request, user)
    form = forms.UserUpdateForm(request.POST)
    if form.is_valid():
        try:
            services.user_update(actor=request.user, user=user, request=request, **form.cleaned_data)
        except ValidationError as error:
            add_errors(form, error)
        else:
            messages.success(request, f"Saved {form.cleaned_data['email']}.")
            return redirect("accounts:user_detail", user_id=user.pk)
    return _user_detail_page(request, user, form=form, status=400)


@admin_required
@require_POST
def user_set_password(request, user_id):
    user = get_object_or_404(User, pk=user_id)
    password_form = forms.SetPasswordForm(user, request.POST)
    if not password_form.is_valid():
        return refused(request, password_form, "set_password", reverse("accounts:user_detail", args=[user.pk]))
    services.user_set_password(actor=request.user, user=user, password=password_form.cleaned_data["password1"], request=request)
    messages.success(request, f"New password set for {user.email}; their sessions were ended.")
    return redirect("accounts:user_detail", user_id=user.pk)


@admin_required
@require_http_methods(["GET", "POST"])
def user_delete(request, user_id):
    user = get_object_or_404(User, pk=user_id)
    if request.method == "POST":
        try:
            services.user_delete(actor=request.user, user=user, request=request)
        except ValidationError as error:
            for message in error.messages:
                messages.error(request, message)
            return redirect("accounts:user_detail", user_id=user.pk)
        messages.success(request, f"Deleted {user.email}.")
        return redirect("accounts:user_list")
    return render(request, "accounts/user_delete.html", {"subject": user, "blockers": services.user_delete_blockers(user)})


@admin_required
@require_GET
def activity_list(request):
    filters = forms.ActivityFilterForm(request.GET)
    entries = ActivityLog.objects.all()
    if filters.is_valid():
        entries = filters.filter(entries)
    return render(request, "accounts/activity_list.html", {"filters": filters, "page": _page(request, entries)})


