# Debian's Python on the trixie base, standing in for the official python
# image the panel's Dockerfile names (PYTHON_IMAGE): `python` and `pip` on the
# PATH, pip allowed to install beside Debian's packages, npm trusting what the
# machine trusts (a proxy in front of the registry may sign for it).
ARG BASE
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python-is-python3 && \
    rm -rf /var/lib/apt/lists/*
ENV PIP_BREAK_SYSTEM_PACKAGES=1 NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt PYTHONUNBUFFERED=1
