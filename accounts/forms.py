from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.template import loader

from . import activity, services
from .models import EMAIL_TAKEN, User, normalize_email


class EmailField(forms.EmailField):
    def to_python(self, value):
        return normalize_email(super().to_python(value))


class NewPasswordMixin:
    """Two password fields that must match and pass the password validators."""

    password_user_field = None

    def clean_password2(self):
        password1 = self.cleaned_data.get("password1")
        password2 = self.cleaned_data.get("password2")
        if password1 and password2 and password1 != password2:
            raise forms.ValidationError("The two passwords do not match.", code="password_mismatch")
        return password2

    def _post_clean(self):
        super()._post_clean()
        password = self.cleaned_data.get("password2")
        if password:
            try:
                password_validation.validate_password(password, self.password_user())
            except forms.ValidationError as error:
                self.add_error("password1", error)

    def password_user(self):
        email = self.cleaned_data.get("email")
        return User(email=email) if email else None


def _password_field(label, autocomplete="new-password"):
    return forms.CharField(
        label=label,
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": autocomplete}),
    )


class LoginForm(AuthenticationForm):
    """Email + password. Unknown email, wrong password and disabled account
    all get the same message (Django's ModelBackend runs one hash each)."""

    username = EmailField(label="Email", max_length=254, widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}))

    password = _password_field("Password", autocomplete="current-password")

    error_messages = {
        "invalid_login": "That email and password do not match an enabled account.",
        "inactive": "That email and password do not match an enabled account.",
    }


class SignupForm(NewPasswordMixin, forms.Form):
    code = forms.CharField(
        label="Registration code",
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}),
        help_text="The 8-character code an administrator gave you.",
    )
    email = EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password1 = _password_field("Password")
    password2 = _password_field("Password again")

    def clean_code(self):
        return self.cleaned_data["code"].strip().upper()

    # Whether the email has an account is the service's to say, after the code
    # is found valid: nobody without a code learns who has an account.


class PasswordChangeForm(NewPasswordMixin, forms.Form):
    current_password = _password_field("Current password", autocomplete="current-password")
    password1 = _password_field("New password")
    password2 = _password_field("New password again")

    def __init__(self, user, *args, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_current_password(self):
        password = self.cleaned_data["current_password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("Your current password is not correct.", code="password_incorrect")
        return password

    def password_user(self):
        return self.user


class PasswordForgotForm(PasswordResetForm):
    """Django's reset form: a link for each active account with that address (none for an
    unknown one; the page says the same), sent by the worker (services.password_reset_send)."""

    email = EmailField(label="Email", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}))

    def save(self, *, request, **options):
        self.request = request
        return super().save(request=request, **options)

    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email, html_email_template_name=None):
        subject = "".join(loader.render_to_string(subject_template_name, context).splitlines())
        services.password_reset_send(request=self.request, user=context["user"], subject=subject,
                                     body=loader.render_to_string(email_template_name, context))


class SetPasswordForm(NewPasswordMixin, forms.Form):
    password1 = _password_field("New password")
    password2 = _password_field("New password again")

    def __init__(self, user, *args, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def password_user(self):
        return self.user


class UserCreateForm(NewPasswordMixin, forms.Form):
    email = EmailField(max_length=254)
    is_admin = forms.BooleanField(label="Administrator", required=False)
    password1 = _password_field("Password")
    password2 = _password_field("Password again")

    def clean_email(self):
        email = self.cleaned_data["email"]
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError(EMAIL_TAKEN, code="email_taken")
        return email


class UserUpdateForm(forms.Form):
    email = EmailField(max_length=254)
    is_admin = forms.BooleanField(label="Administrator", required=False)
    is_active = forms.BooleanField(label="Enabled", required=False)
    server_quota = forms.IntegerField(
        label="Virtual server limit",
        required=False,
        min_value=0,
        max_value=1000,
        help_text="Leave empty for the default.",
    )
    disk_quota_mb = forms.IntegerField(
        label="Disk limit of all their servers (MB)",
        required=False,
        min_value=0,
        max_value=1024 * 1024 * 1024,
        help_text="Leave empty for the default.",
    )


class RegistrationCodeForm(forms.Form):
    max_uses = forms.IntegerField(
        label="Limit sign-ups",
        required=False,
        min_value=1,
        max_value=1000,
        help_text="Leave empty for any number of sign-ups until it expires.",
    )


class UserSearchForm(forms.Form):
    SORTS = {
        "email": "email",
        "-email": "-email",
        "joined": "date_joined",
        "-joined": "-date_joined",
        "seen": "last_seen",
        "-seen": "-last_seen",
        "servers": "server_count",
        "-servers": "-server_count",
    }
    q = forms.CharField(label="Search", required=False, max_length=254)
    sort = forms.ChoiceField(choices=[(key, key) for key in SORTS], required=False)

    def ordering(self):
        return self.SORTS.get(self.cleaned_data.get("sort") or "email")


class ActivityFilterForm(forms.Form):
    user = forms.CharField(label="User email", required=False, max_length=254)
    action = forms.ChoiceField(choices=lambda: [("", "Any action"), *activity.choices()], required=False)
    date_from = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def filter(self, queryset):
        data = self.cleaned_data
        if data.get("user"):
            queryset = queryset.filter(email__icontains=data["user"].strip())
        if data.get("action"):
            queryset = queryset.filter(action=data["action"])
        if data.get("date_from"):
            queryset = queryset.filter(created_at__date__gte=data["date_from"])
        if data.get("date_to"):
            queryset = queryset.filter(created_at__date__lte=data["date_to"])
        return queryset



class SshKeyForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100, help_text="To tell your keys apart, like “laptop”.")
    public_key = forms.CharField(
        label="Public key", max_length=16384,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "mono", "placeholder": "ssh-ed25519 AAAA… you@laptop"}),
        help_text="The one line of ~/.ssh/id_ed25519.pub (make one with ssh-keygen -t ed25519).",
    )
