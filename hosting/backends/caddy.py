"""The users' Caddy: renders its whole configuration from the database and applies it.

Each node has a Caddy of its own, serving the domains of the servers on it (their
addresses are on its engine's users' network): a process applies the configuration
of the node it sits on (Node.local()), through that machine's admin socket.
Caddy's admin API validates a configuration before it switches to it
(`POST /load`), so a refused configuration leaves the previous one serving.
The only module that talks to Caddy.
"""

import http.client
import json
import logging
import socket
from urllib.parse import urlsplit

from django.conf import settings

from ..models import Domain, Node

log = logging.getLogger(__name__)

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;background:#f5f7fb;color:#1c2433;display:flex;min-height:90vh;align-items:center;justify-content:center}}
main{{max-width:32rem;padding:2rem;background:#fff;border:1px solid #e3e8ef;border-radius:10px}}h1{{font-size:1.3rem}}p{{color:#667085}}</style></head>
<body><main><h1>{title}</h1><p>{text}</p></main></body></html>"""
NOT_FOUND_PAGE = PAGE.format(title="No site here", text="No site is configured for this address.")
UNAVAILABLE_PAGE = PAGE.format(
    title="This site is not available ({http.error.status_code})",
    text="The server behind this site is not answering. If it is yours, check in the control panel that it is running and that something listens on the domain's port.",
)
STOPPED_PAGE = PAGE.format(
    title="This site's server is stopped",
    text="The virtual server behind this site is not running. If it is yours, start it in the control panel.",
)
ERROR_PAGE = PAGE.format(title="{http.error.status_code} {http.error.status_text}", text="The request could not be served.")
CLOUDFLARE_ONLY_PAGE = PAGE.format(title="Forbidden", text="This site is only reachable through Cloudflare.")


class ProxyError(Exception):
    """Caddy refused the configuration or could not be reached; str() is fit for people."""


def _html(status, body):
    return {
        "handler": "static_response",
        "status_code": status,
        "headers": {"Content-Type": ["text/html; charset=utf-8"]},
        "body": body,
    }


def _upstream(domain, server):
    # The monitor and the worker keep an address only while the server runs.
    if not server.ip_address:
        return _html(503, STOPPED_PAGE)
    return {"handler": "reverse_proxy", "upstreams": [{"dial": f"{server.ip_address}:{domain.port}"}]}


def _site_routes(domain, server):
    routes = []
    if domain.cloudflare:
        routes.append({
            "match": [{"host": [domain.name], "not": [{"remote_ip": {"ranges": settings.CLOUDFLARE_IP_RANGES}}]}],
            "handle": [_html(403, CLOUDFLARE_ONLY_PAGE)],
            "terminal": True,
        })
    routes.append({"match": [{"host": [domain.name]}], "handle": [_upstream(domain, server)], "terminal": True})
    return routes


def _redirect_to_https():
    port = "" if settings.CADDY_HTTPS_PORT == 443 else f":{settings.CADDY_HTTPS_PORT}"
    return {
        "handler": "static_response",
        "status_code": 308,
        "headers": {"Location": [f"https://{{http.request.host}}{port}{{http.request.uri}}"]},
    }


def _error_routes():
    return [
        {"match": [{"expression": "{http.error.status_code} >= 502 && {http.error.status_code} <= 504"}],
         "handle": [_html("{http.error.status_code}", UNAVAILABLE_PAGE)], "terminal": True},
        {"handle": [_html("{http.error.status_code}", ERROR_PAGE)]},
    ]


def _listen(port):
    host = settings.CADDY_LISTEN_HOST
    return [f"{host}:{port}"]


def _issuer():
    if settings.CADDY_TLS_ISSUER == "internal":
        return {"module": "internal"}
    issuer = {"module": "acme"}
    if settings.CADDY_ACME_EMAIL:
        issuer["email"] = settings.CADDY_ACME_EMAIL
    return issuer


def _route_order(domain):
    """Caddy takes the first route that matches: exact names first, then
    wildcards, the most specific (most labels) first."""
    wildcard = domain.name.startswith("*.")
    return (wildcard, -domain.name.count(".") if wildcard else 0, domain.name)


def render():
    """The whole configuration of this node's Caddy: every routed domain of its servers, as a dict."""
    domains = sorted(
        Domain.objects.routed().filter(server__node=Node.local())
        .select_related("server").only("name", "port", "ssl", "cloudflare", "server__ip_address"),
        key=_route_order,
    )
    plain_routes, tls_routes = [], []
    for domain in domains:
        if domain.ssl:
            tls_routes += _site_routes(domain, domain.server)
            plain_routes.append({"match": [{"host": [domain.name]}], "handle": [_redirect_to_https()], "terminal": True})
        else:
            plain_routes += _site_routes(domain, domain.server)
    catch_all = {"handle": [_html(404, NOT_FOUND_PAGE)]}

    config = {
        "admin": {"listen": settings.CADDY_ADMIN_LISTEN},
        "apps": {
            "http": {
                "http_port": settings.CADDY_HTTP_PORT,
                "https_port": settings.CADDY_HTTPS_PORT,
                "servers": {
                    "plain": {
                        "listen": _listen(settings.CADDY_HTTP_PORT),
                        "routes": [*plain_routes, catch_all],
                        "errors": {"routes": _error_routes()},
                        "automatic_https": {"disable": True},
                    },
                    "tls": {
                        "listen": _listen(settings.CADDY_HTTPS_PORT),
                        "routes": [*tls_routes, catch_all],
                        "errors": {"routes": _error_routes()},
                        "automatic_https": {"disable_redirects": True},
                    },
                },
            },
            "tls": {"automation": {"policies": _tls_policies(domains)}},
            # Never touch the machine's trust store with Caddy's own CA.
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
        },
    }
    return config


def _tls_policies(domains):
    # Behind Cloudflare the origin certificate only has to satisfy Cloudflare: Caddy's own CA.
    cloudflare = [d.name for d in domains if d.ssl and d.cloudflare]
    policies = [{"subjects": cloudflare, "issuers": [{"module": "internal"}]}] if cloudflare else []
    return [*policies, {"issuers": [_issuer()]}]


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: how the panel reaches Caddy's admin API in production."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def _request(method, path, body=None):
    """(status, body text) from Caddy's admin API, over TCP or a unix socket."""
    url = settings.CADDY_ADMIN_URL
    headers = {"Content-Type": "application/json"}
    if url.startswith("unix://"):
        connection = _UnixConnection(url.removeprefix("unix://"), settings.CADDY_TIMEOUT)
        headers["Host"] = ""  # what Caddy expects on its unix socket (RFC 9112: no host, empty value)
    else:
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=settings.CADDY_TIMEOUT)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def _admin(method, path, body=None):
    try:
        status, text = _request(method, path, body)
    except OSError:
        raise ProxyError("The web proxy (Caddy) is not reachable, so the change could not be applied.") from None
    if status >= 400:
        try:
            detail = json.loads(text).get("error", text)
        except ValueError:
            detail = text
        raise ProxyError(f"The web proxy refused the configuration: {str(detail)[:300]}")
    return text


def apply(config=None):
    """Load the rendered configuration into Caddy; ProxyError if it is refused or down."""
    config = render() if config is None else config
    _admin("POST", "/load", json.dumps(config))
    return config


def apply_quietly():
    """Apply, and only log a failure: for changes that must not wait for Caddy (the drift task retries)."""
    try:
        apply()
    except ProxyError as error:
        log.warning("could not apply the proxy configuration: %s (the drift task will retry)", error)


def current():
    return json.loads(_admin("GET", "/config/"))


def reapply_if_drifted():
    """Re-apply when Caddy's running configuration is not ours (restarted, edited by hand)."""
    wanted = render()
    try:
        running = current()
    except ProxyError as error:
        log.warning("proxy drift check: %s", error)
        return False
    if running == json.loads(json.dumps(wanted)):
        return False
    log.warning("proxy configuration drifted; re-applying")
    apply(wanted)
    return True


