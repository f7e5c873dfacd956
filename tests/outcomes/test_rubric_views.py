from decimal import Decimal

import pytest
from django.urls import reverse

from agentops.outcomes.models import Rubric
from agentops.teams.models import AuditEvent, Role

from .factories import CRITERIA, grade, graded_evaluation, make_rubric


def rubric_post(criteria=CRITERIA, golden=(), initial=0, **overrides):
    data = {
        "name": "Support reply",
        "description": "Replies to customers.",
        "pass_threshold": "0.8",
        "max_iterations": "3",
        "grader_model": "claude-haiku-4-5",
        "grader_instructions": "",
        "min_kappa": "",
        "criteria-TOTAL_FORMS": str(len(criteria)),
        "criteria-INITIAL_FORMS": str(initial),
        "criteria-MIN_NUM_FORMS": "0",
        "criteria-MAX_NUM_FORMS": "1000",
        "golden-TOTAL_FORMS": str(len(golden)),
        "golden-INITIAL_FORMS": "0",
        "golden-MIN_NUM_FORMS": "0",
        "golden-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(criteria):
        for key, value in row.items():
            data[f"criteria-{i}-{key}"] = "" if value is None else str(value)
    for i, row in enumerate(golden):
        for key, value in row.items():
            data[f"golden-{i}-{key}"] = str(value)
    data.update(overrides)
    return data


def test_list_shows_the_teams_rubrics_to_a_viewer(
    team_a, team_b, alice, charlie, login, member_of_team_a
):
    make_rubric(team_a, alice)
    make_rubric(team_b, charlie, name="Team B rubric")
    response = login(member_of_team_a(Role.VIEWER)).get(reverse("rubrics:list"))
    assert response.status_code == 200
    assert b"Support reply" in response.content
    assert b"Team B rubric" not in response.content
    assert b"New rubric" not in response.content  # viewers cannot create


def test_list_empty_state_filters_and_pagination(alice_client, team_a, alice, settings):
    response = alice_client.get(reverse("rubrics:list"))
    assert b"No rubrics yet" in response.content and b"Create the first rubric" in response.content
    settings.PAGE_SIZE = 2
    for name in ["Alpha", "Beta", "Gamma"]:
        make_rubric(team_a, alice, name=name)
    archived = make_rubric(team_a, alice, name="Old")
    archived.archived_at = archived.created_at
    archived.save()
    response = alice_client.get(reverse("rubrics:list"))
    assert b"Alpha" in response.content and b"Gamma" not in response.content
    assert b"Page 1 of 2" in response.content
    assert b"Gamma" in alice_client.get(reverse("rubrics:list") + "?page=2").content
    response = alice_client.get(reverse("rubrics:list") + "?q=bet")
    assert b"Beta" in response.content and b"Alpha" not in response.content
    response = alice_client.get(reverse("rubrics:list") + "?status=archived")
    assert b"Old" in response.content and b"Alpha" not in response.content
    response = alice_client.get(reverse("rubrics:list") + "?q=zzz")
    assert b"No rubrics match these filters" in response.content
    response = alice_client.get(reverse("rubrics:list") + "?q=bet", headers={"HX-Request": "true"})
    assert b"<html" not in response.content and b"Beta" in response.content


def test_editor_creates_a_rubric_in_the_browser(alice_client, team_a, alice):
    golden = [{"output": "A good reply.", "expected_verdict": "satisfied", "note": "ok"}]
    response = alice_client.post(reverse("rubrics:create"), rubric_post(golden=golden))
    rubric = Rubric.objects.get(team=team_a)
    assert response.status_code == 302
    assert response["Location"] == reverse("rubrics:detail", args=[rubric.pk])
    version = rubric.current_version
    assert version.number == 1 and version.criteria.count() == 3
    assert version.golden_examples.get().output == "A good reply."
    assert AuditEvent.objects.filter(verb="rubric.create", actor=alice).exists()


def test_blank_extra_rows_are_ignored_and_deleted_rows_dropped(alice_client, team_a):
    blank = {"name": "", "guidance": "", "weight": "1", "scale_max": "5", "minimum": ""}
    rows = [*CRITERIA, {**CRITERIA[0], "name": "Dropped", "DELETE": "on"}, blank]
    response = alice_client.post(reverse("rubrics:create"), rubric_post(criteria=rows))
    assert response.status_code == 302
    names = [c.name for c in Rubric.objects.get().current_version.criteria.all()]
    assert names == ["Accuracy", "Completeness", "Tone"]


@pytest.mark.parametrize(
    "change,message",
    [
        ({"pass_threshold": "1.5"}, b"above 0 and at most 1"),
        ({"max_iterations": "25"}, b"less than or equal to 20"),
        ({"criteria-0-weight": "0"}, b"Must be greater than 0."),
        ({"criteria-1-weight": "-2"}, b"Must be greater than 0."),
        ({"criteria-0-minimum": "9"}, b"within the scale (0 to 5)"),
        ({"criteria-1-name": "accuracy"}, b"Another criterion is already called"),
        ({"grader_model": "gpt-4"}, b"Select a valid choice"),
        ({"min_kappa": "2"}, b"less than or equal to 1"),
    ],
)
def test_bad_input_gets_field_errors(alice_client, change, message):
    response = alice_client.post(reverse("rubrics:create"), rubric_post(**change))
    assert response.status_code == 400
    assert message in response.content
    assert b"field-error" in response.content or b'role="alert"' in response.content
    assert not Rubric.objects.exists()


def test_no_criteria_is_an_error(alice_client):
    response = alice_client.post(reverse("rubrics:create"), rubric_post(criteria=[]))
    assert response.status_code == 400
    assert b"A rubric needs at least one criterion." in response.content


def test_duplicate_rubric_name_is_a_field_error(alice_client, team_a, alice):
    make_rubric(team_a, alice)
    response = alice_client.post(reverse("rubrics:create"), rubric_post())
    assert response.status_code == 400
    assert b"already has a rubric named" in response.content


def test_reviewer_cannot_create_or_edit(bob_client, team_a, alice):
    rubric = make_rubric(team_a, alice)
    assert bob_client.get(reverse("rubrics:create")).status_code == 403
    assert bob_client.post(reverse("rubrics:create"), rubric_post(name="X")).status_code == 403
    assert bob_client.get(reverse("rubrics:edit", args=[rubric.pk])).status_code == 403
    assert bob_client.post(reverse("rubrics:archive", args=[rubric.pk])).status_code == 403
    assert Rubric.objects.count() == 1


def test_another_team_gets_404(charlie_client, team_a, alice):
    rubric = make_rubric(team_a, alice)
    for name in ["rubrics:detail", "rubrics:edit", "rubrics:archive"]:
        assert charlie_client.get(reverse(name, args=[rubric.pk])).status_code in {404, 405}
        assert charlie_client.post(reverse(name, args=[rubric.pk])).status_code == 404
    url = reverse("rubrics:version", args=[rubric.pk, 1])
    assert charlie_client.get(url).status_code == 404


def test_edit_form_is_prefilled_and_saves_a_new_version(alice_client, team_a, alice):
    rubric = make_rubric(team_a, alice, max_iterations=1)
    evaluation = graded_evaluation(team_a, rubric, [grade(4, 3, 1)])
    response = alice_client.get(reverse("rubrics:edit", args=[rubric.pk]))
    assert response.status_code == 200
    assert b'value="Accuracy"' in response.content
    assert b"criteria-empty" in response.content  # the template the Add button copies

    rows = [{**CRITERIA[0], "guidance": "Every fact is right, with a source."}, CRITERIA[2]]
    response = alice_client.post(
        reverse("rubrics:edit", args=[rubric.pk]),
        rubric_post(criteria=rows, initial=2, name="Support reply v2", max_iterations="4"),
    )
    assert response.status_code == 302
    rubric.refresh_from_db()
    assert rubric.current_version.number == 2 and rubric.name == "Support reply v2"
    assert rubric.current_version.max_iterations == 4
    evaluation.refresh_from_db()
    assert evaluation.rubric_version.number == 1
    assert evaluation.rubric_version.criteria.count() == 3

    detail = alice_client.get(reverse("rubrics:detail", args=[rubric.pk]))
    assert b"v1" in detail.content and b"v2" in detail.content
    assert b"with a source" in detail.content
    old = alice_client.get(reverse("rubrics:version", args=[rubric.pk, 1]))
    assert old.status_code == 200
    assert b"You are looking at version 1" in old.content
    assert b"Completeness" in old.content and b"with a source" not in old.content
    assert alice_client.get(reverse("rubrics:version", args=[rubric.pk, 9])).status_code == 404


def test_saving_unchanged_says_so(alice_client, team_a, alice):
    rubric = make_rubric(team_a, alice, description="Replies to customers.")
    response = alice_client.post(
        reverse("rubrics:edit", args=[rubric.pk]), rubric_post(initial=3), follow=True
    )
    assert b"Nothing changed" in response.content
    assert rubric.versions.count() == 1


def test_archive_and_restore(alice_client, team_a, alice):
    rubric = make_rubric(team_a, alice)
    alice_client.post(reverse("rubrics:archive", args=[rubric.pk]))
    rubric.refresh_from_db()
    assert rubric.is_archived
    response = alice_client.get(reverse("rubrics:edit", args=[rubric.pk]), follow=True)
    assert b"An archived rubric cannot be edited" in response.content
    alice_client.post(reverse("rubrics:archive", args=[rubric.pk]))
    rubric.refresh_from_db()
    assert not rubric.is_archived
    assert AuditEvent.objects.filter(verb__in=["rubric.archive", "rubric.restore"]).count() == 2


def test_detail_shows_how_many_more_reviews_calibration_needs(bob_client, team_a, alice):
    rubric = make_rubric(team_a, alice, min_kappa=Decimal("0.6"))
    response = bob_client.get(reverse("rubrics:detail", args=[rubric.pk]))
    assert response.status_code == 200
    assert b"Needs 20 more reviews" in response.content
    assert b"wait in the review queue" in response.content
