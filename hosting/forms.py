from decimal import Decimal

from django import forms

from .models import VirtualServer, validate_server_name


class ServerNameForm(forms.Form):
    name = forms.CharField(
        label="Name",
        min_length=1,
        max_length=64,
        validators=[validate_server_name],
        help_text="Up to 64 letters, digits, spaces and - _ . ( )",
    )


class ServerLimitsForm(forms.Form):
    memory_mb = forms.IntegerField(label="Memory (MB)", min_value=64, max_value=1024 * 1024)
    cpus = forms.DecimalField(label="CPUs", min_value=Decimal("0.01"), max_value=1024, max_digits=6, decimal_places=2)
    pids_limit = forms.IntegerField(label="Processes", min_value=32, max_value=4_194_304)


class ServerFilterForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=100)
    owner = forms.CharField(label="Owner", required=False, max_length=254)
    state = forms.ChoiceField(
        label="State",
        required=False,
        choices=[("", "Any state"), *VirtualServer.ObservedState.choices, ("busy", "Busy"), ("failed", "Failed")],
    )

    def filter(self, servers):
        data = self.cleaned_data
        if q := data.get("q", "").strip():
            servers = servers.filter(name__icontains=q) if not q.isdigit() else servers.filter(pk=int(q))
        if owner := data.get("owner", "").strip():
            servers = servers.filter(owner__email__icontains=owner)
        state = data.get("state")
        if state == "busy":
            servers = servers.exclude(operation="")
        elif state == "failed":
            servers = servers.exclude(last_error="")
        elif state:
            servers = servers.filter(observed_state=state, operation="")
        return servers
