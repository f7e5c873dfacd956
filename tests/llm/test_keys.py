"""A team's API key: stored encrypted, shown as its last 4, never in dumps, logs or pages."""

import io
import logging

import pytest
from django.core.management import call_command
from django.urls import reverse

from agentops.llm import services
from agentops.llm.client import credential_for_team
from agentops.llm.crypto import decrypt
from agentops.llm.models import KeyTestStatus, TeamCredential
from agentops.teams.models import AuditEvent, Role

SECRET = "sk-ant-api03-" + "Zq7" * 20 + "-wXyZ"


@pytest.fixture
def stored_key(team_a, alice):
    return services.api_key_save(team=team_a, actor=alice, api_key=SECRET)


def test_owner_adds_a_key_encrypted_and_audited(alice_client, team_a, alice):
    response = alice_client.post(reverse("llm:key-save"), {"api_key": SECRET}, follow=True)
    assert response.status_code == 200
    row = TeamCredential.objects.get(team=team_a)
    assert SECRET not in row.encrypted_key
    assert decrypt(row.encrypted_key) == SECRET
    assert row.key_last4 == "wXyZ"
    assert b"\xe2\x80\xa6wXyZ" in response.content  # "…wXyZ"
    assert SECRET.encode() not in response.content
    event = AuditEvent.objects.get(verb="model_key.add")
    assert event.actor == alice and event.after == {"key": "…wXyZ"}
    assert credential_for_team(team_a).source == "team"


def test_rotate_and_remove(alice_client, team_a, stored_key):
    other = "sk-ant-api03-" + "r" * 60 + "9876"
    alice_client.post(reverse("llm:key-save"), {"api_key": other})
    row = TeamCredential.objects.get(team=team_a)
    assert decrypt(row.encrypted_key) == other and row.key_last4 == "9876"
    assert AuditEvent.objects.filter(verb="model_key.rotate").exists()
    response = alice_client.post(reverse("llm:key-remove"))
    assert response.status_code == 302
    row.refresh_from_db()
    assert not row.has_key and row.key_last4 == ""
    assert AuditEvent.objects.filter(verb="model_key.remove").exists()
    assert credential_for_team(team_a).source == "simulator"


def test_the_key_is_not_in_a_database_dump(stored_key):
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    dump = out.getvalue()
    assert "wXyZ" in dump  # the dump did include the credential row...
    assert SECRET not in dump  # ...but never the key itself
    assert SECRET[:-4] not in dump


def test_the_key_is_not_in_logs_or_errors(team_a, stored_key, caplog, settings):
    caplog.set_level(logging.DEBUG)
    # A real key pointed at a closed local port: the SDK logs and raises, we classify.
    settings.ANTHROPIC_BASE_URL = "http://127.0.0.1:9"
    with pytest.raises(services.TransientModelError) as caught:
        services.model_call(
            team=team_a,
            model="claude-haiku-4-5",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=16,
        )
    assert caught.value.kind == "connection"
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value.as_dict())
    assert caplog.records  # the SDK and we did log
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET[:-4] not in record.getMessage()
    assert SECRET not in repr(credential_for_team(team_a))


def test_the_key_is_not_on_any_page(alice_client, stored_key):
    for name in ("llm:settings", "llm:usage", "llm:key-status", "teams:settings"):
        response = alice_client.get(reverse(name))
        assert response.status_code == 200
        assert SECRET.encode() not in response.content
        assert SECRET[:-4].encode() not in response.content


def test_a_bad_key_is_a_field_error_and_not_echoed(alice_client, team_a):
    response = alice_client.post(reverse("llm:key-save"), {"api_key": "short key!"})
    assert response.status_code == 400
    assert b"does not look like an API key" in response.content
    assert b"short key!" not in response.content
    assert not TeamCredential.objects.filter(team=team_a).exclude(encrypted_key="").exists()


def test_reviewer_cannot_change_the_key(bob_client, team_a, stored_key):
    for name in ("llm:key-save", "llm:key-remove", "llm:key-test"):
        response = bob_client.post(reverse(name), {"api_key": "sk-ant-" + "b" * 40})
        assert response.status_code == 403
    row = TeamCredential.objects.get(team=team_a)
    assert decrypt(row.encrypted_key) == SECRET
    assert row.test_status == KeyTestStatus.UNTESTED


def test_reviewer_sees_the_page_without_forms(bob_client, stored_key):
    response = bob_client.get(reverse("llm:settings"))
    assert response.status_code == 200
    assert b"\xe2\x80\xa6wXyZ" in response.content
    assert b'action="/settings/model/key/"' not in response.content
    assert b"Only owners and admins" in response.content


def test_other_team_sees_only_its_own_state(charlie_client, stored_key):
    response = charlie_client.get(reverse("llm:settings"))
    assert response.status_code == 200
    assert b"wXyZ" not in response.content
    assert b"offline simulator" in response.content


def test_the_page_says_plainly_when_the_simulator_answers(alice_client, settings):
    settings.ANTHROPIC_API_KEY = ""
    response = alice_client.get(reverse("llm:settings"))
    assert b"No API key: calls are answered by the built-in offline simulator" in response.content
    settings.ANTHROPIC_API_KEY = "sk-ant-api03-" + "e" * 40
    response = alice_client.get(reverse("llm:settings"))
    assert b"use the server's ANTHROPIC_API_KEY" in response.content


def test_test_key_queues_a_task_with_the_team_id_only(
    alice_client, team_a, stored_key, monkeypatch, django_capture_on_commit_callbacks
):
    from agentops.llm import tasks

    sent = []
    monkeypatch.setattr(tasks.llm_test_key, "delay", lambda *args: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(reverse("llm:key-test"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b'hx-trigger="every 2s"' in response.content  # polls while pending
    assert sent == [(team_a.pk,)]
    assert TeamCredential.objects.get(team=team_a).test_status == KeyTestStatus.PENDING


def test_key_test_with_the_simulator_lists_models(team_a, alice, settings):
    from agentops.llm.tasks import llm_test_key

    settings.ANTHROPIC_API_KEY = ""
    services.api_key_test_start(team=team_a, actor=alice)
    llm_test_key(team_a.pk)
    row = TeamCredential.objects.get(team=team_a)
    assert row.test_status == KeyTestStatus.OK and row.tested_source == "simulator"
    assert row.available_models and row.tested_at
    ids = [m for m, _ in services.model_choices(team_a)]
    assert ids == [m["id"] for m in row.available_models]


def test_key_test_failure_is_recorded_without_the_key(team_a, stored_key, settings):
    from agentops.llm.tasks import llm_test_key

    settings.ANTHROPIC_BASE_URL = "http://127.0.0.1:9"
    llm_test_key(team_a.pk)
    row = TeamCredential.objects.get(team=team_a)
    assert row.test_status == KeyTestStatus.FAILED and row.test_kind == "connection"
    assert SECRET not in row.test_message
    # Without a working key the catalogue falls back to the built-in list.
    assert ("claude-sonnet-5-5", "Claude Sonnet 5.5") in services.model_choices(team_a)


def test_key_status_partial_for_htmx(bob_client, team_a, stored_key):
    TeamCredential.objects.filter(team=team_a).update(test_status=KeyTestStatus.PENDING)
    response = bob_client.get(reverse("llm:key-status"))
    assert response.status_code == 200
    assert b'id="key-status"' in response.content and b"<html" not in response.content


@pytest.mark.parametrize("role", [Role.ADMIN])
def test_admin_may_manage_the_key(member_of_team_a, login, role, team_a):
    response = login(member_of_team_a(role)).post(reverse("llm:key-save"), {"api_key": SECRET})
    assert response.status_code == 302
    assert TeamCredential.objects.get(team=team_a).key_last4 == "wXyZ"


def test_editor_may_not_manage_the_key(member_of_team_a, login, team_a):
    response = login(member_of_team_a(Role.EDITOR)).post(
        reverse("llm:key-save"), {"api_key": SECRET}
    )
    assert response.status_code == 403


def test_a_key_this_server_cannot_decrypt_is_reported_not_replaced(
    alice_client, team_a, stored_key, settings, sim
):
    from cryptography.fernet import Fernet

    settings.AGENTOPS_FERNET_KEY = Fernet.generate_key().decode()
    settings.ANTHROPIC_API_KEY = ""
    response = alice_client.get(reverse("llm:settings"))
    assert b"Key unreadable" in response.content
    assert alice_client.get(reverse("llm:usage")).status_code == 200
    with pytest.raises(services.PermanentModelError) as caught:
        services.model_call(
            team=team_a, model="m", messages=[{"role": "user", "content": "x"}], max_tokens=8
        )
    assert caught.value.kind == "key_unreadable"
    assert not sim.received  # no fallback to another credential
    from agentops.llm.tasks import llm_test_key

    llm_test_key(team_a.pk)
    row = TeamCredential.objects.get(team=team_a)
    assert row.test_status == KeyTestStatus.FAILED and row.test_kind == "key_unreadable"
