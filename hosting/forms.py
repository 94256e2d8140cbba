import re
from decimal import Decimal

from django import forms
from django.urls import reverse_lazy

from controlpanel.errors import refusal

from .models import Node, VirtualServer, validate_app_name, validate_server_name
from .services import COMPOSE_MAX_BYTES, compose_file_check, workloads


class ServerNameForm(forms.Form):
    name = forms.CharField(
        label="Name",
        min_length=1,
        max_length=64,
        validators=[validate_server_name],
        help_text="Up to 64 letters, digits, spaces and - _ . ( )",
    )


class ServerCreateForm(ServerNameForm):
    """A new server's name; an administrator may also say which node it goes to."""

    node = forms.ModelChoiceField(label="Node", queryset=Node.objects.order_by("name"), required=False,
                                  empty_label="The one with the most room", help_text="Administrators only.")

    def __init__(self, *args, choose_node=False, **kwargs):
        super().__init__(*args, **kwargs)
        if not choose_node:
            del self.fields["node"]


class ServerLimitsForm(forms.Form):
    memory_mb = forms.IntegerField(label="Memory (MB)", min_value=64, max_value=1024 * 1024)
    cpus = forms.DecimalField(label="CPUs", min_value=Decimal("0.01"), max_value=1024, max_digits=6, decimal_places=2)
    pids_limit = forms.IntegerField(label="Processes", min_value=32, max_value=4_194_304)
    disk_mb = forms.IntegerField(label="Disk (MB)", min_value=256, max_value=16 * 1024 * 1024, required=False,
                                 help_text="From its next start; a restart applies it now.")


class ServerMoveForm(forms.Form):
    node = forms.ModelChoiceField(label="Move to", queryset=Node.objects.none(), empty_label=None,
                                  help_text="It is stopped, its files are copied there, and it starts there; its domains follow "
                                            "(their DNS records must then point at that node).")

    def __init__(self, *args, server, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["node"].queryset = Node.objects.exclude(pk=server.node_id).order_by("name")


class ServerFilterForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=100)
    owner = forms.CharField(label="Owner", required=False, max_length=254)
    state = forms.ChoiceField(
        label="State",
        required=False,
        choices=[("", "Any state"), ("busy", "Busy (any operation)"), *VirtualServer.State.choices],
    )

    def filter(self, servers):
        data = self.cleaned_data
        if q := data.get("q", "").strip():
            # An id is ASCII digits that fit a bigint ("²" is a digit to str.isdigit, not to int()).
            is_id = re.fullmatch(r"[0-9]{1,18}", q)
            servers = servers.filter(pk=int(q)) if is_id else servers.filter(name__icontains=q)
        if owner := data.get("owner", "").strip():
            servers = servers.filter(owner__email__icontains=owner)
        state = data.get("state")
        if state == "busy":
            servers = servers.exclude(operation="")
        elif state:
            servers = servers.in_state(VirtualServer.State(state))
        return servers


class DomainSettingsForm(forms.Form):
    port = forms.IntegerField(label="Port on the server", min_value=1, max_value=65535, initial=80)
    ssl = forms.BooleanField(label="HTTPS (automatic certificate)", required=False, initial=True)
    cloudflare = forms.BooleanField(
        label="Behind Cloudflare's proxy",
        required=False,
        help_text="Only Cloudflare may connect. With HTTPS, the origin uses an internal certificate.",
    )


class DomainForm(DomainSettingsForm):
    name = forms.CharField(
        label="Domain name",
        max_length=300,
        widget=forms.TextInput(attrs={"placeholder": "www.example.org", "autocomplete": "off", "spellcheck": "false"}),
    )
    field_order = ["name", "port", "ssl", "cloudflare"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # What the name may be is the service's rule (hosting.services.domains.check_name), checked live too.
        self.fields["name"].widget.attrs["data-check-url"] = reverse_lazy("hosting:domain_check")


class DomainSearchForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=253)
    pending = forms.BooleanField(label="Waiting (for DNS or approval)", required=False)


class AppForm(forms.Form):
    """A compose app: its name and its file, typed or pasted, or uploaded."""

    name = forms.CharField(label="Name", max_length=40, validators=[validate_app_name],
                           help_text="The compose project's name: lowercase letters, digits, - and _.")
    compose_file = forms.CharField(
        label="Compose file", required=False,  # its size is compose_file_check's to judge
        widget=forms.Textarea(attrs={"rows": 16, "spellcheck": "false", "class": "mono"}),
    )
    upload = forms.FileField(label="…or upload it", required=False, help_text=f"At most {COMPOSE_MAX_BYTES // 1024} KiB.")

    def __init__(self, *args, renaming=True, image="nginx:alpine", **kwargs):
        """`image`: what the example names (one the server has, where it has one: a registry may be out of reach)."""
        super().__init__(*args, **kwargs)
        self.fields["compose_file"].widget.attrs["placeholder"] = f"services:\n  web:\n    image: {image}\n    ports: ['8080:80']"
        if not renaming:
            del self.fields["name"]

    def clean_upload(self):
        upload = self.cleaned_data.get("upload")
        if upload is None:
            return ""
        if upload.size > COMPOSE_MAX_BYTES:
            raise refusal(workloads.ERRORS, "too_big")
        try:
            return upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise forms.ValidationError("The file is not text (UTF-8).", code="not_text") from None

    def clean(self):
        data = super().clean()
        text = data.get("upload") or data.get("compose_file") or ""
        if not text.strip() and not self.errors:
            raise forms.ValidationError("Paste a compose file, or upload one.", code="required")
        try:
            data["compose_file"] = compose_file_check(text)
        except forms.ValidationError as error:
            self.add_error("compose_file", error)
        return data

    def compose(self):
        """What the app services take."""
        values = {"compose_file": self.cleaned_data["compose_file"]}
        if "name" in self.fields:
            values["name"] = self.cleaned_data["name"]
        return values


class NodeSettingsForm(forms.Form):
    """What an admin says of a node: where users reach it, and how much it may take."""

    status = forms.ChoiceField(label="State", choices=Node.Status.choices, initial=Node.Status.ACTIVE,
                               help_text="A draining node keeps its servers and takes no new ones.")
    public_address = forms.CharField(label="Public address", max_length=253, required=False,
                                     help_text="What users' DNS records and ssh point at (empty: its engine's address).")
    memory_mb = forms.IntegerField(label="Memory (MB)", min_value=256, required=False,
                                   help_text="Empty: what its engine reports.")
    cpus = forms.DecimalField(label="CPUs", min_value=Decimal("0.5"), max_digits=6, decimal_places=2, required=False)
    max_servers = forms.IntegerField(label="Most servers", min_value=1, required=False, help_text="Empty: no limit.")
    overcommit = forms.DecimalField(label="Memory overcommit", min_value=1, max_value=10, max_digits=4, decimal_places=2,
                                    initial=Decimal("1.00"), help_text="1: promise no more memory than it has.")


class NodeForm(NodeSettingsForm):
    """A new node: its name, and the address the panel reaches its engine at."""

    name = forms.SlugField(label="Name", max_length=64, help_text="Lowercase letters, digits and hyphens, e.g. node2.")
    address = forms.GenericIPAddressField(label="Engine address", protocol="both",
                                          help_text="The node's IP address; the panel reaches its engine there on port 2376, over mutual TLS.")
    field_order = ["name", "address", "public_address", "memory_mb", "cpus", "max_servers", "overcommit"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.fields["status"]  # a new node is active once it has joined
