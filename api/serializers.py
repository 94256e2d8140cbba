from rest_framework import serializers

from hosting.models import VirtualServer, validate_server_name


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
