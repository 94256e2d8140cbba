"""One module per outside system, and the only one that talks to it: docker (the
engines), caddy (the users' web proxy), dns (TXT look-ups), disks (the servers'
file systems on their node). Each takes plain values, bounds what it reads, and
raises an error of its own with a message a person can read."""
