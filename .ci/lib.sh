# Sourced by the other scripts: picks a Python >= 3.12 (Django 6 needs it) and
# keeps the project's virtualenv in .venv up to date with pyproject.toml.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

find_python() {
    local candidate
    for candidate in python3.13 python3.12 \
        "$HOME"/.pyenv/versions/3.13*/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "error: Python 3.12 or newer is required (Debian 13: apt-get install python3 python3-venv)" >&2
    return 1
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        # A fresh Debian 13 may have no Python, or one without venv: Debian's are new enough.
        find_python >/dev/null 2>&1 || apt_install python3 python3-venv
        "$(find_python)" -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; apt_install python3-venv; "$(find_python)" -m venv "$VENV"; }
    fi
    # Reinstall only when pyproject.toml changed since the last install.
    local stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
    if [ ! -e "$stamp" ]; then
        echo "Installing Python packages into .venv ..." >&2
        if ! { "$VENV/bin/pip" install --upgrade pip && "$VENV/bin/pip" install -e "$ROOT[test]"; } >"$VENV/pip.log" 2>&1; then
            tail -n 40 "$VENV/pip.log" >&2
            return 1
        fi
        rm -f "$VENV"/.installed-* && touch "$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
}

# Debian packages, installed only when a command is missing.
APT_UPDATED=""
apt_install() {
    if [ -z "$APT_UPDATED" ]; then
        apt-get update -qq >&2
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

wait_for() {  # wait_for SECONDS COMMAND...: retry COMMAND until it succeeds
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "error: timed out waiting for: $*" >&2
            return 1
        fi
        sleep 0.5
    done
}

# PostgreSQL on the local socket, with a superuser role for the current OS user.
ensure_postgres() {
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    if ! pg_isready -q; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
        wait_for 30 pg_isready -q
    fi
    if ! psql -Atqc "select 1" postgres >/dev/null 2>&1; then
        su postgres -c "createuser --superuser $(id -un)"
    fi
}

ensure_redis() {
    command -v redis-server >/dev/null || apt_install redis-server
    if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
        mkdir -p /var/lib/redis /var/log/redis
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
            --dir /var/lib/redis --logfile /var/log/redis/controlpanel.log
        wait_for 15 redis-cli -h 127.0.0.1 ping
    fi
}

# A Docker engine: Debian's docker.io, started in the background when none answers.
ensure_docker() {
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    command -v dockerd >/dev/null || apt_install docker.io iptables
    echo "Starting dockerd (log: /var/log/dockerd.log) ..." >&2
    setsid nohup dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
    wait_for 60 docker info
}

# Front-end libraries: npm installs what package-lock.json pins, then the files
# the pages load are copied into static/vendor/ (neither is committed).
ensure_assets() {
    command -v npm >/dev/null || apt_install nodejs npm
    local stamp="$ROOT/node_modules/.installed-$(sha256sum "$ROOT/package-lock.json" | cut -c1-16)"
    if [ ! -e "$stamp" ]; then
        echo "Installing front-end packages (npm ci) ..." >&2
        # --ignore-scripts: no package here needs its install script (@scarf/scarf's reports installs).
        (cd "$ROOT" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2) && touch "$stamp"
    fi
    "$ROOT/.ci/assets"
}
