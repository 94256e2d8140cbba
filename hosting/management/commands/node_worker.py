"""A node's own worker (deploy/node): Celery on this node's queues only.

    python manage.py node_worker [--concurrency 4] [--pool prefork]

Its broker user reaches only keys under the node's prefix and no channel
(hosting.backends.broker), so it runs without Celery's broadcasts: no gossip,
mingle or heartbeat (REDIS_KEY_PREFIX also turns remote control off).
"""

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from hosting.models import Node


class Command(BaseCommand):
    help = "Run the worker of the node this machine is (NODE_NAME): its queues only."

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=4, help="tasks at once (default 4)")
        parser.add_argument("--pool", default="prefork", help="Celery's worker pool (default prefork)")

    def handle(self, *args, concurrency, pool, **options):
        node = Node.objects.filter(name=settings.NODE_NAME).first()  # its own row: all its database role sees
        if node is None or node.is_local or not settings.REDIS_KEY_PREFIX:
            raise CommandError(f"This is not a node's worker: NODE_NAME ({settings.NODE_NAME}) must name a node added to the panel, "
                               "with the settings its join gave (deploy/node/install).")
        command = [sys.executable, "-m", "celery", "-A", "controlpanel", "worker", "--queues", f"{node.queue},{node.tenant_queue}",
                   "--hostname", f"{node.name}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
                   "--concurrency", str(concurrency), "--pool", pool]
        os.execv(sys.executable, command)
