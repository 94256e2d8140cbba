# PostgreSQL from Debian's packages, started as the official postgres image
# starts: POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB make the cluster on
# the first start; data in /var/lib/postgresql/data; pg_isready for health.
ARG BASE
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends postgresql && rm -rf /var/lib/apt/lists/* && \
    ln -s /usr/lib/postgresql/*/bin /usr/lib/postgresql/bin
COPY postgres-entrypoint /usr/local/bin/
ENV PGDATA=/var/lib/postgresql/data
ENTRYPOINT ["postgres-entrypoint"]
