import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from agentops.navigation import SECTIONS


def test_every_model_is_in_the_admin():
    ours = [m for m in apps.get_models() if m.__module__.startswith("agentops.")]
    assert ours
    missing = [m.__name__ for m in ours if not admin.site.is_registered(m)]
    assert not missing


def test_admin_needs_staff(alice_client, bob_client):
    assert bob_client.get("/admin/").status_code == 302
    alice_client.get("/")  # alice is a team owner, not staff
    assert alice_client.get("/admin/").status_code == 302


def test_every_navigation_page_opens(bob_client):
    for section in SECTIONS:
        response = bob_client.get(reverse(section.url_name))
        assert response.status_code == 200, section.key
        assert section.label.encode() in response.content


def test_pages_carry_csp_and_csrf_header(bob_client):
    response = bob_client.get("/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "object-src 'none'" in policy
    assert "unsafe-inline" not in policy
    assert b'hx-headers=\'{"X-CSRFToken": "' in response.content
    assert b"/static/django_htmx/htmx-2" in response.content


def test_404_page_is_ours(bob_client):
    response = bob_client.get("/no/such/page/")
    assert response.status_code == 404
    assert b"belongs to a team you are not working in" in response.content


def test_403_page_explains_the_role(bob_client):
    response = bob_client.get(reverse("teams:audit"))
    assert response.status_code == 403
    assert b"This needs the admin role or higher; you are reviewer." in response.content


@pytest.mark.django_db
def test_500_page_is_ours(settings):
    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    from django.urls import path

    def boom(request):
        raise RuntimeError("boom")

    settings.ROOT_URLCONF = type("urls", (), {"urlpatterns": [path("boom/", boom)]})
    response = client.get("/boom/")
    assert response.status_code == 500
    assert b"Something went wrong" in response.content


def test_login_logout_and_password_change(client, alice):
    from conftest import PASSWORD

    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert b"didn't match" in response.content
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a-new-long-pass-42",
            "new_password2": "a-new-long-pass-42",
        },
    )
    assert response.status_code == 302
    client.post(reverse("logout"))
    assert client.get("/").status_code == 302
    assert client.login(username="alice", password="a-new-long-pass-42")
