"""What the Celery workers run (hosting.tasks calls these): reconcile (make each
server's container match its row), monitor (one poll cycle of every daemon) and
workloads (deploys and container actions inside servers, on the tenant queue)."""
