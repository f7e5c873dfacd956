import pytest
from django.urls import reverse

from agentops.agents.models import HostAllowlistEntry
from agentops.teams.models import AuditEvent


def test_alice_adds_and_removes_a_host(alice_client, team_a, alice):
    response = alice_client.post(
        reverse("agents:allowlist-add"),
        {"host": "API.Example.com.", "note": "the public API"},
    )
    assert response.status_code == 302
    entry = HostAllowlistEntry.objects.get(team=team_a)
    assert entry.host == "api.example.com" and not entry.allow_private
    page = alice_client.get(reverse("agents:tools")).content.decode()
    assert "api.example.com" in page and "the public API" in page
    alice_client.post(reverse("agents:allowlist-remove", args=[entry.pk]))
    assert not HostAllowlistEntry.objects.exists()
    verbs = list(AuditEvent.objects.order_by("id").values_list("verb", "actor"))
    assert verbs == [("allowlist.add", alice.pk), ("allowlist.remove", alice.pk)]


@pytest.mark.parametrize(
    ("host", "stored"),
    [
        ("*.Example.org", "*.example.org"),
        ("10.0.0.7", "10.0.0.7"),
        ("[::1]", "::1"),
        ("bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_hosts_are_normalised(alice_client, team_a, host, stored):
    alice_client.post(reverse("agents:allowlist-add"), {"host": host, "allow_private": "on"})
    entry = HostAllowlistEntry.objects.get(team=team_a)
    assert entry.host == stored and entry.allow_private


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("https://example.com/", "not a URL"),
        ("exa mple.com", "This is not a valid host name."),
        ("-bad-.example.com", "This is not a valid host name."),
        ("*.com", "A wildcard needs a domain"),
        ("", "This field is required."),
    ],
)
def test_bad_hosts_are_field_errors(alice_client, host, message):
    response = alice_client.post(reverse("agents:allowlist-add"), {"host": host})
    assert response.status_code == 400
    assert any(message in e for e in response.context["allowlist_form"].errors["host"])
    assert message.encode() in response.content
    assert not HostAllowlistEntry.objects.exists()


def test_a_duplicate_host_is_a_field_error(alice_client, team_a):
    HostAllowlistEntry.objects.create(team=team_a, host="example.com")
    response = alice_client.post(reverse("agents:allowlist-add"), {"host": "Example.com"})
    assert response.status_code == 400
    errors = response.context["allowlist_form"].errors["host"]
    assert errors == ["example.com is already on the allowlist."]


def test_bob_sees_the_allowlist_but_cannot_change_it(bob_client, team_a):
    entry = HostAllowlistEntry.objects.create(team=team_a, host="example.com")
    page = bob_client.get(reverse("agents:tools")).content.decode()
    assert "example.com" in page and "Only owners and admins change the allowlist." in page
    add = bob_client.post(reverse("agents:allowlist-add"), {"host": "evil.example"})
    assert add.status_code == 403
    remove = bob_client.post(reverse("agents:allowlist-remove", args=[entry.pk]))
    assert remove.status_code == 403
    assert list(HostAllowlistEntry.objects.values_list("host", flat=True)) == ["example.com"]


def test_charlie_cannot_remove_team_a_hosts(charlie_client, charlie, team_a):
    entry = HostAllowlistEntry.objects.create(team=team_a, host="team-a-only.example.net")
    assert b"team-a-only.example.net" not in charlie_client.get(reverse("agents:tools")).content
    response = charlie_client.post(reverse("agents:allowlist-remove", args=[entry.pk]))
    assert response.status_code == 404
    assert HostAllowlistEntry.objects.filter(pk=entry.pk).exists()


def test_remove_needs_post(alice_client, team_a):
    entry = HostAllowlistEntry.objects.create(team=team_a, host="example.com")
    response = alice_client.get(reverse("agents:allowlist-remove", args=[entry.pk]))
    assert response.status_code == 405
