# The panel's image: web, gateway, worker and beat all run from it (docker-compose.yml).
ARG PYTHON_IMAGE=python:3.13-slim-bookworm

# The front-end libraries, from the npm registry as package-lock.json pins them.
FROM ${PYTHON_IMAGE} AS assets
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: no package here needs one (swagger-ui-dist pulls in @scarf/scarf, whose script reports installs)
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY .ci/assets .ci/assets
RUN mkdir static && .ci/assets

FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DATA_DIR=/data PRODUCTION=true

WORKDIR /app
COPY pyproject.toml README.md ./
COPY controlpanel controlpanel
COPY accounts accounts
COPY hosting hosting
COPY api api
COPY templates templates
COPY static static
COPY --from=assets /src/static/vendor static/vendor
COPY manage.py ./
# e2fsprogs: the worker makes each server's disk (mkfs.ext4, resize2fs).
RUN apt-get update && apt-get install -y --no-install-recommends e2fsprogs && rm -rf /var/lib/apt/lists/*
RUN pip install . && \
    useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin panel && \
    mkdir -p /data && chown panel:panel /data

# Static files are collected at build time (WhiteNoise serves them). The
# settings need production values to load: throwaway ones, for this step only.
RUN SECRET_KEY=build-only-$(python -c 'import secrets; print(secrets.token_urlsafe(48))') \
    ALLOWED_HOSTS=build DATABASE_URL=sqlite:////tmp/build.db REDIS_URL=redis://build \
    DATA_DIR=/tmp/build python manage.py collectstatic --no-input -v0 && \
    mkdir -p /app/staticfiles && cp -r /tmp/build/static/. /app/staticfiles/ && rm -rf /tmp/build /tmp/build.db

ENV STATIC_ROOT=/app/staticfiles
USER panel
EXPOSE 8000
CMD ["gunicorn", "controlpanel.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
