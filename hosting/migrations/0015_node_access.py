"""What a node's own worker may see: row-level security on the tables it reads, so its
database role (hosting.backends.database_roles) sees its own node and what hangs off it.

The policies bind every role but the tables' owner (the panel's own role), which row-level
security leaves alone. PostgreSQL only: a node's worker needs a database on the network."""

from django.db import migrations, models

# Each table's rows that a node's role sees: its node's, and what hangs off them (the
# subqueries are themselves under these policies).
POLICIES = {
    "hosting_node": "database_role = current_user",
    "hosting_virtualserver": "node_id IN (SELECT id FROM hosting_node)",
    "hosting_containersnapshot": "server_id IN (SELECT id FROM hosting_virtualserver)",
    "hosting_domain": "server_id IN (SELECT id FROM hosting_virtualserver)",
    "hosting_app": "server_id IN (SELECT id FROM hosting_virtualserver)",
    "hosting_appdeployment": "app_id IN (SELECT id FROM hosting_app)",
    "accounts_user": "id IN (SELECT owner_id FROM hosting_virtualserver)",
}


def enable(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, rows in POLICIES.items():
        schema_editor.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        schema_editor.execute(f"CREATE POLICY node_rows ON {table} USING ({rows})")


def disable(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in POLICIES:
        schema_editor.execute(f"DROP POLICY IF EXISTS node_rows ON {table}")
        schema_editor.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0007_activity_vocabulary_per_app"),
        ("hosting", "0014_nodes"),
    ]

    operations = [
        migrations.AddField(
            model_name="node",
            name="database_role",
            field=models.CharField(blank=True, max_length=63),
        ),
        migrations.AddField(
            model_name="node",
            name="broker_secret_hash",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="node",
            name="worker_environment",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(enable, disable),
    ]
