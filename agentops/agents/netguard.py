"""Outbound HTTP for tools, guarded against server-side request forgery.

Every request a tool makes (http_fetch, webhook tools) goes through `guarded_request`:

- the URL must be http(s), without credentials, and its host must be on the team's
  allowlist (HostAllowlistEntry);
- the host is resolved once; if any address is private, loopback, link-local, multicast,
  reserved or otherwise not public, the request is refused unless the matching allowlist
  entry says `allow_private`;
- the connection goes to the address that was checked (the URL is rewritten to the IP, the
  Host header and TLS server name keep the host name), so a second DNS answer cannot swap
  in another address (DNS rebinding);
- redirects are followed by hand, a bounded number of times, each target checked again;
- the body is read as a stream and reading stops at the size limit; one deadline covers
  resolving, connecting, redirects and reading.
"""

import functools
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx2
from django.conf import settings

from .models import HostAllowlistEntry

MAX_REDIRECTS = 5
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
USER_AGENT = "agentops-tools/1"
# Certificate verification for https: the system's trust store. Tests put an SSLContext
# that trusts their own certificate authority here.
TLS_VERIFY = True


@functools.cache
def _system_tls_context():
    # Loading the trust store takes tens of milliseconds; one context serves every call.
    return ssl.create_default_context()


def _tls_verify():
    return _system_tls_context() if TLS_VERIFY is True else TLS_VERIFY


class Refused(Exception):
    """The request was not made: the URL or its address is not allowed."""


class RequestFailed(Exception):
    """The request was made and failed (timeout, connection error, too large)."""


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    address: ipaddress.IPv4Address | ipaddress.IPv6Address

    def pinned_url(self):
        """The URL with the checked address in place of the host name."""
        parts = urlsplit(self.url)
        ip = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return urlunsplit((self.scheme, f"{ip}:{self.port}", parts.path or "/", parts.query, ""))

    def host_header(self):
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class GuardedResponse:
    url: str
    status: int
    content_type: str
    body: bytes
    truncated: bool

    def text(self):
        charset = "utf-8"
        for part in self.content_type.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip("\"'")
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


def resolve(host, port):
    """Every address `host` resolves to. A module function so tests can stand in for DNS."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise Refused(f"the host {host!r} could not be resolved") from error
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    # IPv4 first: the address that is pinned should be one this host can usually reach.
    return sorted(set(addresses), key=lambda a: (a.version, addresses.index(a)))


def is_public_address(address):
    if address.version == 6 and address.ipv4_mapped is not None:
        return is_public_address(address.ipv4_mapped)
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def normalize_host(host):
    host = (host or "").strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as error:
        raise Refused(f"the host {host!r} is not a valid host name") from error


def matching_entry(entries, host):
    """The allowlist entry for `host`: an exact entry before a wildcard one."""
    exact = [entry for entry in entries if entry.host == host]
    if exact:
        return exact[0]
    wildcards = [e for e in entries if e.host.startswith("*.") and e.matches(host)]
    # The most specific wildcard decides, so *.internal.example.com can differ from
    # *.example.com.
    return max(wildcards, key=lambda e: len(e.host)) if wildcards else None


def check_url(team, url, entries=None):
    """The checked target for `url`, or Refused saying why not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise Refused(f"the URL {url!r} is not valid") from error
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise Refused("only http and https URLs are allowed")
    if parts.username or parts.password:
        raise Refused("URLs with credentials are not allowed")
    host = normalize_host(parts.hostname)
    if not host:
        raise Refused(f"the URL {url!r} has no host")
    port = port or (443 if scheme == "https" else 80)
    if entries is None:
        entries = list(HostAllowlistEntry.objects.filter(team=team))
    entry = matching_entry(entries, host)
    if entry is None:
        raise Refused(f"the host {host} is not on the team's allowlist")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = resolve(host, port)
    if not addresses:
        raise Refused(f"the host {host!r} could not be resolved")
    non_public = [a for a in addresses if not is_public_address(a)]
    if non_public and not entry.allow_private:
        raise Refused(
            f"the host {host} resolves to a non-public address ({non_public[0]}); an admin "
            "must allow private addresses for it on the allowlist"
        )
    return Target(url=url, scheme=scheme, host=host, port=port, address=addresses[0])


def _remaining(deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise RequestFailed("timed out")
    return left


def _send_once(client, target, *, method, content, headers, deadline, max_bytes):
    request_headers = {"Host": target.host_header(), "User-Agent": USER_AGENT, **headers}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    request = client.build_request(
        method,
        target.pinned_url(),
        content=content,
        headers=request_headers,
        extensions=extensions,
        timeout=httpx2.Timeout(_remaining(deadline)),
    )
    response = client.send(request, stream=True)
    try:
        chunks, size, truncated = [], 0, False
        if response.status_code not in REDIRECT_STATUSES:
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    truncated = True
                    break
                _remaining(deadline)
        body = b"".join(chunks)[:max_bytes]
        return response, body, truncated
    finally:
        response.close()


def guarded_request(
    team,
    url,
    *,
    method="GET",
    content=None,
    headers=None,
    timeout_s=None,
    max_bytes=None,
    follow_redirects=True,
):
    """Make one checked request; GuardedResponse, or Refused / RequestFailed."""
    timeout_s = timeout_s or settings.AGENTOPS_TOOL_HTTP_TIMEOUT_S
    max_bytes = max_bytes or settings.AGENTOPS_TOOL_MAX_RESPONSE_BYTES
    deadline = time.monotonic() + timeout_s
    entries = list(HostAllowlistEntry.objects.filter(team=team))
    # trust_env=False: no proxy from the environment may carry the request elsewhere.
    with httpx2.Client(follow_redirects=False, trust_env=False, verify=_tls_verify()) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            target = check_url(team, url, entries)
            try:
                response, body, truncated = _send_once(
                    client,
                    target,
                    method=method,
                    content=content,
                    headers=headers or {},
                    deadline=deadline,
                    max_bytes=max_bytes,
                )
            except httpx2.InvalidURL as error:
                raise Refused(f"the URL {url!r} is not valid") from error
            except httpx2.TimeoutException as error:
                raise RequestFailed(f"timed out after {timeout_s:g} s") from error
            except httpx2.HTTPError as error:
                raise RequestFailed(f"the request failed: {type(error).__name__}") from error
            except RequestFailed as error:
                raise RequestFailed(f"timed out after {timeout_s:g} s") from error
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUSES and location:
                if not follow_redirects:
                    raise RequestFailed(
                        f"the server answered with a redirect (HTTP {response.status_code})"
                    )
                url = urljoin(url, location)
                if response.status_code == 303:
                    method, content = "GET", None
                continue
            return GuardedResponse(
                url=url,
                status=response.status_code,
                content_type=response.headers.get("content-type", ""),
                body=body,
                truncated=truncated,
            )
    raise RequestFailed(f"more than {MAX_REDIRECTS} redirects")
