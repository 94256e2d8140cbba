from decimal import Decimal

from rest_framework import serializers

from accounts.models import ActivityLog, RegistrationCode, SshKey, User

from hosting.models import App, AppDeployment, ContainerSnapshot, Domain, Node, VirtualServer, validate_app_name, validate_server_name

from .models import ApiToken


class ServerSerializer(serializers.ModelSerializer):
    state = serializers.CharField(source="state.value", read_only=True, help_text="What its badge on the pages says, as a code.")
    state_label = serializers.CharField(source="state.label", read_only=True)
    node = serializers.CharField(source="node.name", read_only=True)

    class Meta:
        model = VirtualServer
        fields = ["id", "name", "state", "state_label", "node", "memory_mb", "cpus", "pids_limit", "disk_mb", "disk_used_mb",
                  "container_count", "last_error", "created_at"]
        read_only_fields = fields


class OperationSerializer(serializers.Serializer):
    """A change under way: poll the server until its state is no longer the operation."""

    server = ServerSerializer()
    operation = serializers.CharField(help_text="What is under way, e.g. starting; empty once done.")


class ServerNameSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64, validators=[validate_server_name],
                                 help_text="Up to 64 letters, digits, spaces and - _ . ( )")


class DeploymentSerializer(serializers.ModelSerializer):
    class Meta:
        model = AppDeployment
        fields = ["id", "action", "result", "output", "started_at", "finished_at"]
        read_only_fields = fields


class AppSerializer(serializers.ModelSerializer):
    server = serializers.IntegerField(source="server_id", read_only=True)
    deployments = serializers.SerializerMethodField(help_text="The latest ten, newest first.")

    class Meta:
        model = App
        fields = ["id", "server", "name", "status", "created_at", "updated_at", "deployments"]
        read_only_fields = fields

    def get_deployments(self, app) -> list[dict]:
        return DeploymentSerializer(app.deployments.all()[:10], many=True).data


class ComposeFileSerializer(serializers.Serializer):
    compose_file = serializers.CharField(trim_whitespace=False, help_text="A docker compose file, as text.")


class AppCreateSerializer(ComposeFileSerializer):
    server = serializers.IntegerField(help_text="The server's id.")
    name = serializers.CharField(max_length=40, validators=[validate_app_name])


class AppChangeSerializer(serializers.Serializer):
    """A change under way: poll the app until its status is no longer busy."""

    app = AppSerializer()
    deployment = DeploymentSerializer()


class DomainSerializer(serializers.ModelSerializer):
    server = serializers.IntegerField(source="server_id", help_text="The server's id.")
    txt_name = serializers.SerializerMethodField(help_text="A claim waiting for DNS: the TXT record to make...")
    txt_value = serializers.SerializerMethodField(help_text="... and what it must say.")

    class Meta:
        model = Domain
        fields = ["id", "server", "name", "port", "ssl", "cloudflare", "status", "pending_until", "check_error", "txt_name", "txt_value",
                  "created_at"]
        read_only_fields = ["id", "status", "pending_until", "check_error", "created_at"]
        extra_kwargs = {"name": {"validators": []}}  # the service checks names (and whether one is taken), in its words

    def get_txt_name(self, domain) -> str | None:
        return domain.txt_name if domain.status == Domain.Status.DNS else None

    def get_txt_value(self, domain) -> str | None:
        return domain.txt_value if domain.status == Domain.Status.DNS else None


class ContainerSerializer(serializers.ModelSerializer):
    """A container inside a server, as the monitor last read it (its name, image and labels are its owner's words)."""

    server = serializers.IntegerField(source="server_id", read_only=True)
    project = serializers.CharField(read_only=True, help_text="Its compose project, if any.")

    class Meta:
        model = ContainerSnapshot
        fields = ["id", "server", "docker_id", "name", "image", "command", "state", "status", "state_since", "ports", "project", "action",
                  "action_error", "last_changed"]
        read_only_fields = fields


class SshKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = SshKey
        fields = ["id", "name", "public_key", "kind", "bits", "fingerprint", "created_at", "last_used_at"]
        read_only_fields = ["id", "kind", "bits", "fingerprint", "created_at", "last_used_at"]
        extra_kwargs = {"public_key": {"help_text": "One OpenSSH public key line (ssh-ed25519 AAAA... comment)."}}


class ActivitySerializer(serializers.ModelSerializer):
    action_label = serializers.CharField(read_only=True)

    class Meta:
        model = ActivityLog
        fields = ["id", "action", "action_label", "message", "target", "ip", "created_at"]
        read_only_fields = fields


# Administrators -----------------------------------------------------------------

class UserSerializer(serializers.ModelSerializer):
    server_count = serializers.IntegerField(read_only=True)
    key_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = User
        fields = ["id", "email", "is_admin", "is_active", "date_joined", "last_seen", "server_quota", "disk_quota_mb", "server_count",
                  "key_count"]
        read_only_fields = fields


class AdminServerSerializer(ServerSerializer):
    owner = serializers.EmailField(source="owner.email", read_only=True, allow_null=True)

    class Meta(ServerSerializer.Meta):
        fields = [*ServerSerializer.Meta.fields, "owner"]
        read_only_fields = fields


class LimitsSerializer(serializers.Serializer):
    memory_mb = serializers.IntegerField(min_value=64, max_value=1024 * 1024)
    cpus = serializers.DecimalField(min_value=Decimal("0.01"), max_value=1024, max_digits=6, decimal_places=2)
    pids_limit = serializers.IntegerField(min_value=32, max_value=4_194_304)
    disk_mb = serializers.IntegerField(min_value=256, max_value=16 * 1024 * 1024, required=False, allow_null=True,
                                       help_text="From its next start; a restart applies it now. Left out: as it is.")


class NodeSerializer(serializers.ModelSerializer):
    server_count = serializers.IntegerField(read_only=True)
    promised_mb = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Node
        fields = ["id", "name", "public_address", "status", "memory_mb", "cpus", "max_servers", "overcommit", "server_count",
                  "promised_mb", "contacted_at", "contact_error", "worker_seen_at"]
        read_only_fields = fields


class RegistrationCodeSerializer(serializers.ModelSerializer):
    class Meta:
        model = RegistrationCode
        fields = ["code", "created_at", "expires_at", "max_uses", "use_count"]
        read_only_fields = ["code", "created_at", "expires_at", "use_count"]
        # The pages' bounds (RegistrationCodeForm), not the database's, which differ between PostgreSQL and SQLite.
        extra_kwargs = {"max_uses": {"required": False, "min_value": 1, "max_value": 1000, "help_text": "Left out: any number of sign-ups."}}


class TokenSerializer(serializers.ModelSerializer):
    user = serializers.EmailField(source="user.email", read_only=True)
    servers = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "user", "name", "hint", "scope", "servers", "created_at", "expires_at", "revoked_at", "last_used_at", "last_used_ip"]
        read_only_fields = fields
