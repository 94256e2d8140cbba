"""The gateway: the long-lived async process (manage.py gateway) that serves
terminals, log streams and SSH into servers. routing and consumers are its
WebSockets (Channels), terminals its sessions and their sweeper, logs the
streams of containers' logs, ssh the SSH server (asyncssh)."""
