import pytest
from django.urls import reverse

from agentops.teams.models import AuditEvent, Membership, Role


def test_members_page_lists_the_team_only(bob_client, alice, charlie):
    response = bob_client.get(reverse("teams:members"))
    assert response.status_code == 200
    assert b"alice" in response.content
    assert b"charlie" not in response.content


def test_owner_adds_an_existing_user_and_it_is_audited(
    alice_client, alice, team_a, django_user_model
):
    django_user_model.objects.create_user("dora", password="x")
    response = alice_client.post(
        reverse("teams:member-add"), {"username": "dora", "role": Role.EDITOR}
    )
    assert response.status_code == 302
    membership = Membership.objects.get(team=team_a, user__username="dora")
    assert membership.role == Role.EDITOR
    event = AuditEvent.objects.get(verb="membership.add")
    assert event.actor == alice and event.team == team_a
    assert event.after == {"user": "dora", "role": "editor"}


def test_adding_an_unknown_user_is_a_field_error(alice_client, team_a):
    response = alice_client.post(
        reverse("teams:member-add"), {"username": "nobody", "role": Role.EDITOR}
    )
    assert response.status_code == 400
    assert b"There is no user named" in response.content
    assert not AuditEvent.objects.exists()


def test_reviewer_cannot_add_members(bob_client, django_user_model):
    django_user_model.objects.create_user("dora", password="x")
    response = bob_client.post(
        reverse("teams:member-add"), {"username": "dora", "role": Role.OWNER}
    )
    assert response.status_code == 403
    assert not Membership.objects.filter(user__username="dora").exists()


def test_admin_cannot_make_an_owner(member_of_team_a, login, bob):
    admin = member_of_team_a(Role.ADMIN)
    membership = Membership.objects.get(user=bob)
    response = login(admin).post(
        reverse("teams:member-role", args=[membership.pk]), {"role": Role.OWNER}, follow=True
    )
    assert b"Only an owner can make someone an owner" in response.content
    membership.refresh_from_db()
    assert membership.role == Role.REVIEWER


def test_last_owner_cannot_be_demoted_or_removed(alice_client, alice):
    membership = Membership.objects.get(user=alice)
    response = alice_client.post(
        reverse("teams:member-role", args=[membership.pk]), {"role": Role.VIEWER}, follow=True
    )
    assert b"The last owner cannot be demoted" in response.content
    response = alice_client.post(reverse("teams:member-remove", args=[membership.pk]), follow=True)
    assert b"The last owner cannot be removed" in response.content
    membership.refresh_from_db()
    assert membership.role == Role.OWNER


def test_an_owner_can_step_down_once_there_is_another(alice_client, alice, bob):
    bob_membership = Membership.objects.get(user=bob)
    alice_client.post(reverse("teams:member-role", args=[bob_membership.pk]), {"role": Role.OWNER})
    alice_membership = Membership.objects.get(user=alice)
    alice_client.post(
        reverse("teams:member-role", args=[alice_membership.pk]), {"role": Role.EDITOR}
    )
    alice_membership.refresh_from_db()
    assert alice_membership.role == Role.EDITOR
    assert list(
        AuditEvent.objects.filter(verb="membership.role").values_list("before", "after")
    ) == [({"role": "owner"}, {"role": "editor"}), ({"role": "reviewer"}, {"role": "owner"})]


def test_another_teams_membership_is_a_404(charlie_client, bob):
    membership = Membership.objects.get(user=bob)
    response = charlie_client.post(reverse("teams:member-remove", args=[membership.pk]))
    assert response.status_code == 404
    assert Membership.objects.filter(pk=membership.pk).exists()


@pytest.mark.parametrize(
    "role,allowed",
    [
        (Role.VIEWER, False),
        (Role.REVIEWER, False),
        (Role.EDITOR, False),
        (Role.ADMIN, True),
        (Role.OWNER, True),
    ],
)
def test_audit_log_needs_admin(member_of_team_a, login, role, allowed):
    response = login(member_of_team_a(role)).get(reverse("teams:audit"))
    assert response.status_code == (200 if allowed else 403)


def test_team_switch_changes_the_current_team(alice, alice_client, team_b, charlie):
    Membership.objects.create(team=team_b, user=alice, role=Role.VIEWER)
    response = alice_client.post(
        reverse("teams:switch"), {"team": team_b.pk, "next": "/"}, follow=True
    )
    assert response.context["team"] == team_b
    members = alice_client.get(reverse("teams:members"))
    assert b"charlie" in members.content
    # A new session (logged out and in again) starts in the team last switched to.
    alice_client.logout()
    alice_client.force_login(alice)
    assert alice_client.get("/").context["team"] == team_b


def test_team_switch_refuses_a_team_you_are_not_in(bob_client, team_b):
    response = bob_client.post(reverse("teams:switch"), {"team": team_b.pk}, follow=True)
    assert b"You are not a member of that team" in response.content
    assert response.context["team"].slug == "team-a"


def test_team_switch_ignores_an_offsite_next(alice_client, alice):
    response = alice_client.post(
        reverse("teams:switch"), {"team": 1, "next": "https://evil.example/"}
    )
    assert response["Location"] == "/"


def test_audit_log_filters_and_paginates(alice_client, alice, team_a, settings):
    from agentops.teams.services import audit_record

    settings.PAGE_SIZE = 5
    for index in range(12):
        audit_record(
            team=team_a, actor=alice, verb="thing.make" if index % 2 else "thing.drop", obj=team_a
        )
    page = alice_client.get(reverse("teams:audit"), {"verb": "thing.make"})
    assert page.context["page"].paginator.count == 6
    assert "Page 1 of 2" in page.content.decode()
    second = alice_client.get(reverse("teams:audit"), {"verb": "thing.make", "page": 2})
    assert len(second.context["page"].object_list) == 1
    empty = alice_client.get(reverse("teams:audit"), {"actor": "nobody"})
    assert b"No audit events match these filters" in empty.content
    audit_record(team=team_a, actor=alice, verb="thing.rename", obj=team_a, after={"name": "B"})
    shown = alice_client.get(reverse("teams:audit"), {"verb": "thing.rename"}).text
    assert "{&quot;name&quot;: &quot;B&quot;}" in shown  # JSON, not a Python dict


def test_user_without_a_team_sees_how_to_join(login, django_user_model):
    loner = django_user_model.objects.create_user("loner", password="x")
    response = login(loner).get("/")
    assert b"You are not a member of any team" in response.content


def test_an_admin_renames_the_team_on_its_settings_page(
    alice_client, alice, team_a, team_b, member_of_team_a, login
):
    settings_page = reverse("teams:settings")
    # A name left blank: the error shows beside the field at the page's own address, so
    # reloading shows the page again instead of a 405.
    refused = alice_client.post(settings_page, {"name": "   "})
    assert refused.status_code == 400 and "This field is required." in refused.text
    assert alice_client.get(settings_page).status_code == 200
    team_a.refresh_from_db()
    assert team_a.name != "" and not AuditEvent.objects.filter(verb="team.rename").exists()

    for role in (Role.VIEWER, Role.EDITOR):
        member = login(member_of_team_a(role))
        assert member.post(settings_page, {"name": "Taken over"}).status_code == 403
        assert "Only owners and admins" in member.get(settings_page).text

    saved = alice_client.post(settings_page, {"name": "Research guild"})
    assert saved.status_code == 302 and saved.url == settings_page
    team_a.refresh_from_db()
    team_b.refresh_from_db()
    assert team_a.name == "Research guild" and team_b.name != "Research guild"
    event = AuditEvent.objects.get(verb="team.rename")
    assert (
        event.actor == alice and event.team == team_a and event.after == {"name": "Research guild"}
    )
