"""http_fetch and the SSRF guard: only allowlisted hosts, no private addresses unless allowed."""

import ipaddress

import pytest

from agentops.agents import netguard
from agentops.agents.models import HostAllowlistEntry
from agentops.agents.tools import execute_tool


def fetch(team, url, version=None):
    return execute_tool(team=team, version=version, name="http_fetch", input={"url": url})


def test_an_allowlisted_local_server_is_fetched(team_a, local_server, allow_local):
    outcome = fetch(team_a, f"{local_server.base_url}/hello")
    assert not outcome.is_error, outcome.content
    assert "Status: 200" in outcome.content
    assert "Content-Type: text/plain; charset=utf-8" in outcome.content
    assert outcome.content.endswith("hello from the test server")


def test_a_host_not_on_the_allowlist_is_refused(team_a, local_server):
    outcome = fetch(team_a, f"{local_server.base_url}/hello")
    assert outcome.is_error
    assert "not on the team's allowlist" in outcome.content
    assert local_server.requests == []


@pytest.mark.parametrize(
    ("entry", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:{port}/hello"),
        ("10.1.2.3", "http://10.1.2.3/"),
        ("192.168.0.10", "http://192.168.0.10/"),
        ("169.254.169.254", "http://169.254.169.254/latest/meta-data/"),
        ("::1", "http://[::1]:{port}/hello"),
        ("::ffff:127.0.0.1", "http://[::ffff:127.0.0.1]:{port}/hello"),
        ("0.0.0.0", "http://0.0.0.0:{port}/hello"),
        ("localhost", "http://localhost:{port}/hello"),
    ],
)
def test_non_public_addresses_are_refused_even_when_the_host_is_allowlisted(
    team_a, local_server, entry, url
):
    HostAllowlistEntry.objects.create(team=team_a, host=entry, allow_private=False)
    port = local_server.server_address[1]
    outcome = fetch(team_a, url.format(port=port))
    assert outcome.is_error
    assert "resolves to a non-public address" in outcome.content
    assert local_server.requests == []


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/", "http://10.0.0.1/", "http://169.254.169.254/", "http://[::1]/"],
)
def test_private_addresses_not_on_the_allowlist_are_refused(team_a, url):
    HostAllowlistEntry.objects.create(team=team_a, host="example.com")
    outcome = fetch(team_a, url)
    assert outcome.is_error and "not on the team's allowlist" in outcome.content


def test_an_allowlisted_name_that_resolves_to_loopback_is_refused(team_a, monkeypatch):
    HostAllowlistEntry.objects.create(team=team_a, host="innocent.example.com")
    monkeypatch.setattr(
        netguard,
        "resolve",
        lambda host, port: [
            ipaddress.ip_address("93.184.215.14"),
            ipaddress.ip_address("127.0.0.1"),
        ],
    )
    outcome = fetch(team_a, "http://innocent.example.com/")
    assert outcome.is_error
    assert "non-public address (127.0.0.1)" in outcome.content


def test_the_checked_address_is_the_one_connected_to(team_a, local_server, monkeypatch):
    # rebind.test exists in no DNS: reaching the server proves the request went to the
    # address that was checked, with the host name kept in the Host header.
    HostAllowlistEntry.objects.create(team=team_a, host="rebind.test", allow_private=True)
    calls = []

    def resolve_once(host, port):
        calls.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(netguard, "resolve", resolve_once)
    port = local_server.server_address[1]
    outcome = fetch(team_a, f"http://rebind.test:{port}/host")
    assert not outcome.is_error, outcome.content
    assert f"host=rebind.test:{port}" in outcome.content
    assert calls == ["rebind.test"]


def test_wildcard_entries_cover_subdomains_only(team_a, monkeypatch):
    HostAllowlistEntry.objects.create(team=team_a, host="*.example.org")
    monkeypatch.setattr(netguard, "resolve", lambda h, p: [ipaddress.ip_address("10.0.0.9")])
    sub = fetch(team_a, "http://api.example.org/")
    assert "non-public address" in sub.content  # allowlisted, then refused for its address
    apex = fetch(team_a, "http://example.org/")
    assert "not on the team's allowlist" in apex.content
    lookalike = fetch(team_a, "http://evilexample.org/")
    assert "not on the team's allowlist" in lookalike.content


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https URLs are allowed"),
        ("ftp://127.0.0.1/", "only http and https URLs are allowed"),
        ("http://user:pw@127.0.0.1/", "URLs with credentials are not allowed"),
        ("http:///nohost", "has no host"),
        ("http://127.0.0.1:99999/", "is not valid"),
    ],
)
def test_malformed_or_other_scheme_urls_are_refused(team_a, allow_local, url, message):
    outcome = fetch(team_a, url)
    assert outcome.is_error and message in outcome.content


def test_a_redirect_to_a_private_address_is_refused(team_a, local_server, allow_local):
    target = "http://169.254.169.254/latest/meta-data/"
    outcome = fetch(team_a, f"{local_server.base_url}/redirect?to={target}")
    assert outcome.is_error
    assert "169.254.169.254 is not on the team's allowlist" in outcome.content


def test_a_redirect_to_an_allowlisted_host_is_followed(team_a, local_server, allow_local):
    outcome = fetch(team_a, f"{local_server.base_url}/redirect?to=/hello")
    assert not outcome.is_error
    assert f"URL: {local_server.base_url}/hello" in outcome.content
    assert [r[1] for r in local_server.requests] == ["/redirect?to=/hello", "/hello"]


def test_redirect_loops_stop(team_a, local_server, allow_local):
    outcome = fetch(team_a, f"{local_server.base_url}/loop")
    assert outcome.is_error
    assert outcome.content == "http_fetch failed: more than 5 redirects."
    assert len(local_server.requests) == 6


def test_large_bodies_are_cut_at_the_size_limit(team_a, local_server, allow_local, settings):
    settings.AGENTOPS_TOOL_MAX_RESPONSE_BYTES = 4096
    outcome = fetch(team_a, f"{local_server.base_url}/big")
    assert not outcome.is_error
    body = outcome.content.split("\n\n", 1)[1]
    assert body.startswith("x" * 4096) and "x" * 4097 not in body
    assert "[truncated: the response is larger than 4096 bytes]" in body


def test_a_slow_server_times_out(team_a, local_server, allow_local, settings):
    settings.AGENTOPS_TOOL_HTTP_TIMEOUT_S = 0.5
    outcome = fetch(team_a, f"{local_server.base_url}/slow")
    assert outcome.is_error
    assert outcome.content == "http_fetch failed: timed out after 0.5 s."


def test_a_trickling_body_is_stopped_by_the_overall_deadline(
    team_a, local_server, allow_local, settings
):
    # Each byte arrives well within the read timeout; only the total deadline stops it.
    settings.AGENTOPS_TOOL_HTTP_TIMEOUT_S = 0.5
    outcome = fetch(team_a, f"{local_server.base_url}/drip")
    assert outcome.is_error and "timed out" in outcome.content


def test_http_errors_are_error_results_with_the_body(team_a, local_server, allow_local):
    outcome = fetch(team_a, f"{local_server.base_url}/missing")
    assert outcome.is_error
    assert "Status: 404" in outcome.content and "no such page" in outcome.content


def test_binary_bodies_are_described_not_dumped(team_a, local_server, allow_local):
    outcome = fetch(team_a, f"{local_server.base_url}/image")
    assert not outcome.is_error
    assert "[108 bytes of image/png not shown: not text]" in outcome.content


def test_a_connection_refused_is_an_error_result(team_a, allow_local):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the fetch: nothing listens
    outcome = fetch(team_a, f"http://127.0.0.1:{port}/")
    assert outcome.is_error and "http_fetch failed: the request failed" in outcome.content


# --- https: the pinned address is connected to, the certificate checked for the host name ---


def _certificate_for(name):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


@pytest.fixture
def tls_server(local_server, tmp_path, monkeypatch):
    """local_server's routes over TLS with a certificate for pinned.test only."""
    import ssl
    import threading
    from http.server import ThreadingHTTPServer

    cert_pem, key_pem = _certificate_for("pinned.test")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), local_server.RequestHandlerClass)
    server.daemon_threads = True
    server.requests, server.release = [], threading.Event()
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(
        netguard, "TLS_VERIFY", ssl.create_default_context(cadata=cert_pem.decode())
    )
    monkeypatch.setattr(netguard, "resolve", lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def test_https_goes_to_the_pinned_address_and_checks_the_host_name(team_a, tls_server):
    HostAllowlistEntry.objects.create(team=team_a, host="pinned.test", allow_private=True)
    port = tls_server.server_address[1]
    outcome = fetch(team_a, f"https://pinned.test:{port}/host")
    assert not outcome.is_error, outcome.content
    assert f"host=pinned.test:{port}" in outcome.content


def test_https_to_a_name_the_certificate_does_not_cover_fails(team_a, tls_server):
    HostAllowlistEntry.objects.create(team=team_a, host="other.test", allow_private=True)
    port = tls_server.server_address[1]
    outcome = fetch(team_a, f"https://other.test:{port}/host")
    assert outcome.is_error
    assert outcome.content == "http_fetch failed: the request failed: ConnectError."
    assert tls_server.requests == []


def test_a_url_with_characters_no_request_can_carry_is_refused(team_a, allow_local, local_server):
    outcome = fetch(team_a, f"{local_server.base_url}/hel\x00lo")
    assert outcome.is_error and "is not valid" in outcome.content
    assert local_server.requests == []
