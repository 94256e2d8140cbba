# Redis from Debian's packages, started as the official redis image starts:
# `redis-server ARGS` in /data, open to the containers of its network (the
# official build turns protected mode off; without a config file Debian's
# would refuse everyone but loopback).
ARG BASE
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/* && \
    printf '#!/bin/sh\nexec /usr/bin/redis-server "$@" --protected-mode no\n' >/usr/local/bin/redis-server && \
    chmod +x /usr/local/bin/redis-server && mkdir -p /data
WORKDIR /data
CMD ["redis-server"]
