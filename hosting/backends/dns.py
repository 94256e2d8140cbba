"""The TXT records that prove someone controls a domain. The only module that asks DNS.

Asks the resolvers in DOMAIN_DNS_SERVERS (ip or ip:port; empty: the
machine's own), with a timeout, and returns plain strings. Whatever a record
says comes from the outside world: it is only ever compared, never shown
unbounded.
"""

import dns.exception
import dns.resolver
from django.conf import settings


class DnsError(Exception):
    """The look-up itself failed; str() is fit to show to the user."""


def _resolver():
    if not settings.DOMAIN_DNS_SERVERS:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        for server in settings.DOMAIN_DNS_SERVERS:
            host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
            resolver.nameservers.append(host)
            if port:
                resolver.nameserver_ports[host] = int(port)
    resolver.lifetime = settings.DOMAIN_DNS_TIMEOUT
    return resolver


def txt_records(name):
    """The TXT strings at `name` (none when it has no TXT record), or DnsError."""
    try:
        answer = _resolver().resolve(name, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.Timeout:
        raise DnsError("The DNS servers did not answer in time.") from None
    except dns.exception.DNSException as error:
        raise DnsError(f"The DNS look-up failed ({type(error).__name__}).") from None
    return [b"".join(record.strings).decode("utf-8", "replace")[:1024] for record in answer][:50]
