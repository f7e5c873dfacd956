import pytest
from django.urls import reverse

from agentops.outcomes.models import Rubric, RubricVersion
from agentops.teams.models import AuditEvent

from .factories import grade, graded_evaluation, make_rubric


@pytest.fixture
def admin_client(client, django_user_model):
    staff = django_user_model.objects.create_superuser("root", password="x")
    client.force_login(staff)
    return client


def _post(team=None, rubric=None, criteria=(), **overrides):
    data = {
        "rubric": rubric.pk if rubric else "",
        "team": team.pk if team else "",
        "name": "Admin rubric",
        "description": "",
        "pass_threshold": "0.75",
        "max_iterations": "3",
        "grader_model": "claude-haiku-4-5",
        "grader_instructions": "",
        "min_kappa": "",
        "criteria-TOTAL_FORMS": str(len(criteria)),
        "criteria-INITIAL_FORMS": "0",
        "criteria-MIN_NUM_FORMS": "0",
        "criteria-MAX_NUM_FORMS": "1000",
        "golden_examples-TOTAL_FORMS": "0",
        "golden_examples-INITIAL_FORMS": "0",
        "golden_examples-MIN_NUM_FORMS": "0",
        "golden_examples-MAX_NUM_FORMS": "1000",
        **overrides,
    }
    for i, row in enumerate(criteria):
        for key, value in row.items():
            data[f"criteria-{i}-{key}"] = value
    return data


CRITERION = {"name": "Clarity", "guidance": "Plain words.", "weight": "1", "scale_max": "5"}


def test_admin_creates_a_rubric_with_inline_criteria_through_the_service(admin_client, team_a):
    response = admin_client.post(
        reverse("admin:outcomes_rubricversion_add"), _post(team=team_a, criteria=[CRITERION])
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    rubric = Rubric.objects.get(team=team_a)
    assert rubric.name == "Admin rubric" and rubric.current_version.number == 1
    assert [c.key for c in rubric.current_version.criteria.all()] == ["clarity"]
    assert AuditEvent.objects.filter(verb="rubric.create").exists()


def test_admin_edit_adds_a_version_and_keeps_the_old_one(admin_client, team_a, alice):
    rubric = make_rubric(team_a, alice, max_iterations=1)
    evaluation = graded_evaluation(team_a, rubric, [grade()])
    add = reverse("admin:outcomes_rubricversion_add")
    prefilled = admin_client.get(f"{add}?rubric={rubric.pk}").content.decode()
    assert 'value="Accuracy"' in prefilled and 'value="Support reply"' in prefilled

    response = admin_client.post(
        add, _post(rubric=rubric, criteria=[CRITERION], name="Support reply")
    )
    assert response.status_code == 302
    rubric.refresh_from_db()
    assert rubric.current_version.number == 2
    assert [c.name for c in rubric.current_version.criteria.all()] == ["Clarity"]
    old = rubric.versions.get(number=1)
    assert old.criteria.count() == 3
    evaluation.refresh_from_db()
    assert evaluation.rubric_version == old
    assert AuditEvent.objects.filter(verb="rubric.update").exists()


def test_admin_field_errors(admin_client, team_a, alice):
    add = reverse("admin:outcomes_rubricversion_add")
    response = admin_client.post(add, _post(team=team_a, criteria=[]))
    assert response.status_code == 200
    assert b"A rubric needs at least one criterion." in response.content
    bad = {**CRITERION, "weight": "0", "minimum": "7"}
    response = admin_client.post(add, _post(team=team_a, criteria=[bad], pass_threshold="3"))
    assert b"Must be greater than 0." in response.content
    assert b"within the scale (0 to 5)" in response.content
    assert b"above 0 and at most 1" in response.content
    response = admin_client.post(add, _post(criteria=[CRITERION]))
    assert b"Choose the team of the new rubric" in response.content
    make_rubric(team_a, alice)
    response = admin_client.post(
        add, _post(team=team_a, criteria=[CRITERION], name="Support reply")
    )
    assert b"already has a rubric named" in response.content
    assert RubricVersion.objects.count() == 1


def test_a_saved_version_is_read_only_in_the_admin(admin_client, team_a, alice):
    rubric = make_rubric(team_a, alice)
    version = rubric.current_version
    url = reverse("admin:outcomes_rubricversion_change", args=[version.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert b'name="pass_threshold"' not in response.content  # shown, not editable
    admin_client.post(url, _post(rubric=rubric, criteria=[CRITERION], name="Changed"))
    version.refresh_from_db()
    assert version.name == "Support reply" and version.criteria.count() == 3
    assert admin_client.get(reverse("admin:outcomes_rubric_add")).status_code == 302
    page = admin_client.get(reverse("admin:outcomes_rubric_change", args=[rubric.pk]))
    assert b"Save a new version of this rubric" in page.content


@pytest.mark.parametrize(
    "model",
    [
        "rubric",
        "rubricversion",
        "criterion",
        "evaluation",
        "iteration",
        "criterionscore",
        "humanreview",
        "humancriterionscore",
        "goldenexample",
    ],
)
def test_every_model_has_a_searchable_changelist(admin_client, team_a, alice, model):
    rubric = make_rubric(team_a, alice, max_iterations=1)
    graded_evaluation(team_a, rubric, [grade()])
    response = admin_client.get(reverse(f"admin:outcomes_{model}_changelist") + "?q=a")
    assert response.status_code == 200


def test_admin_save_without_changes_adds_no_version(admin_client, team_a, alice):
    rubric = make_rubric(team_a, alice, criteria=[{**CRITERION, "minimum": None}])
    version = rubric.current_version
    data = _post(
        rubric=rubric,
        criteria=[{**CRITERION, "minimum": ""}],
        name="Support reply",
        description="A support reply.",
        pass_threshold=str(version.pass_threshold),
    )
    response = admin_client.post(reverse("admin:outcomes_rubricversion_add"), data, follow=True)
    assert response.status_code == 200
    assert b"Nothing changed; no new version was saved." in response.content
    assert rubric.versions.count() == 1
