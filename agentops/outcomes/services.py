"""Writes of the outcomes app: rubric versions, evaluations and their iterations, reviews.

No function here calls a model: the outcome loop calls the grader outside any transaction
and hands its parsed answer to `iteration_record` (see docs/architecture.md, "Outcomes").
"""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone
from django.utils.text import slugify

from agentops.teams.models import Membership, Role
from agentops.teams.services import audit_record, ensure_unique_name, unique_slug

from . import calibration, grading
from .models import (
    GRADE_VERDICTS,
    Criterion,
    CriterionScore,
    Evaluation,
    EvaluationStatus,
    GoldenExample,
    HumanCriterionScore,
    HumanReview,
    Iteration,
    Rubric,
    RubricVersion,
    Verdict,
)

LOOP_ACTOR = "outcome loop"
VERSION_FIELDS = [
    "name",
    "description",
    "pass_threshold",
    "grader_model",
    "grader_instructions",
    "max_iterations",
    "min_kappa",
]
CRITERION_FIELDS = ["name", "guidance", "weight", "scale_max", "minimum"]
GOLDEN_FIELDS = ["output", "expected_verdict", "note"]


def criterion_key(name):
    """The key a criterion has in the grader's tool schema: a slug of its name."""
    return slugify(name).replace("-", "_")[:80] or "criterion"


def _decimal(value):
    return None if value is None or value == "" else Decimal(str(value))


def _int(value):
    return None if value is None or value == "" else int(value)


def _normalized(values, criteria, golden_examples):
    """The content of a version in a form two saves can be compared by."""
    version = {
        "name": (values.get("name") or "").strip(),
        "description": (values.get("description") or "").strip(),
        "pass_threshold": _decimal(values.get("pass_threshold")),
        "grader_model": (values.get("grader_model") or "").strip(),
        "grader_instructions": (values.get("grader_instructions") or "").strip(),
        "max_iterations": _int(values.get("max_iterations")),
        "min_kappa": _decimal(values.get("min_kappa")),
    }
    rows = [
        {
            "name": (row.get("name") or "").strip(),
            "guidance": (row.get("guidance") or "").strip(),
            "weight": _decimal(row.get("weight")),
            "scale_max": _int(row.get("scale_max")),
            "minimum": _int(row.get("minimum")),
        }
        for row in criteria
    ]
    examples = [
        {
            "output": (row.get("output") or "").strip(),
            "expected_verdict": row.get("expected_verdict") or "",
            "note": (row.get("note") or "").strip(),
        }
        for row in golden_examples
    ]
    return version, rows, examples


def _snapshot(version):
    values = {field: getattr(version, field) for field in VERSION_FIELDS}
    criteria = [
        {field: getattr(c, field) for field in CRITERION_FIELDS} for c in version.criteria.all()
    ]
    golden = [
        {field: getattr(g, field) for field in GOLDEN_FIELDS} for g in version.golden_examples.all()
    ]
    return _normalized(values, criteria, golden)


def _comparable(snapshot):
    # Decimal("0.8") and Decimal("0.800") are the same threshold.
    def plain(value):
        return value.normalize() if isinstance(value, Decimal) else value

    version, rows, examples = snapshot
    return (
        {k: plain(v) for k, v in version.items()},
        [{k: plain(v) for k, v in row.items()} for row in rows],
        examples,
    )


def _validated_objects(version_values, rows, examples):
    """Unsaved version, criteria and golden examples, or a ValidationError naming each
    field that is wrong."""
    errors = {}
    version = RubricVersion(**version_values)
    try:
        version.full_clean(exclude=["rubric", "number"])
    except ValidationError as error:
        errors.update(error.message_dict)
    if not rows:
        errors.setdefault("criteria", []).append("A rubric needs at least one criterion.")
    criteria, seen = [], {}
    for position, row in enumerate(rows):
        criterion = Criterion(position=position, key=criterion_key(row["name"]), **row)
        label = f"Criterion {position + 1} ({row['name'] or 'unnamed'})"
        try:
            criterion.full_clean(exclude=["version"])
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                errors.setdefault("criteria", []).extend(
                    f"{label}: {field.replace('_', ' ')}: {message}" for message in messages
                )
        if criterion.key in seen:
            errors.setdefault("criteria", []).append(
                f"{label}: the name is the same as criterion {seen[criterion.key] + 1}'s."
            )
        seen.setdefault(criterion.key, position)
        criteria.append(criterion)
    golden = []
    for position, row in enumerate(examples):
        example = GoldenExample(position=position, **row)
        try:
            example.full_clean(exclude=["version"])
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                errors.setdefault("golden_examples", []).extend(
                    f"Golden example {position + 1}: {field.replace('_', ' ')}: {m}"
                    for m in messages
                )
        golden.append(example)
    if errors:
        raise ValidationError(errors)
    return version, criteria, golden


def _save_version(rubric, actor, version, criteria, golden):
    version.rubric = rubric
    version.number = (rubric.versions.aggregate(top=Max("number"))["top"] or 0) + 1
    version.created_by = actor if getattr(actor, "is_authenticated", False) else None
    version.save()
    for criterion in criteria:
        criterion.version = version
    Criterion.objects.bulk_create(criteria)
    for example in golden:
        example.version = version
    GoldenExample.objects.bulk_create(golden)
    return version


def _plain(value):
    # Decimal("0.800") is recorded as "0.8", the same as the value a form sent.
    return format(value.normalize(), "f") if isinstance(value, Decimal) else value


def _audit_values(values, rows, examples):
    return {
        **{k: _plain(v) for k, v in values.items()},
        "criteria": [{k: _plain(v) for k, v in row.items()} for row in rows],
        "golden_examples": len(examples),
    }


@transaction.atomic
def rubric_create(
    *,
    team,
    actor,
    name,
    criteria,
    description="",
    pass_threshold=Decimal("0.8"),
    grader_model="claude-haiku-4-5",
    grader_instructions="",
    max_iterations=3,
    min_kappa=None,
    golden_examples=(),
):
    """A new rubric with its version 1. `criteria` and `golden_examples` are lists of dicts
    with the fields of Criterion (name, guidance, weight, scale_max, minimum) and
    GoldenExample (output, expected_verdict, note)."""
    values, rows, examples = _normalized(
        {
            "name": name,
            "description": description,
            "pass_threshold": pass_threshold,
            "grader_model": grader_model,
            "grader_instructions": grader_instructions,
            "max_iterations": max_iterations,
            "min_kappa": min_kappa,
        },
        list(criteria),
        list(golden_examples),
    )
    version, criterion_rows, golden_rows = _validated_objects(values, rows, examples)
    ensure_unique_name(Rubric, team, values["name"], noun="a rubric")
    rubric = Rubric.objects.create(
        team=team,
        name=values["name"],
        slug=unique_slug(Rubric, team, values["name"], fallback="rubric"),
        description=values["description"],
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    version = _save_version(rubric, actor, version, criterion_rows, golden_rows)
    rubric.current_version = version
    rubric.save(update_fields=["current_version", "updated_at"])
    audit_record(
        team=team,
        actor=actor,
        verb="rubric.create",
        obj=rubric,
        after={"version": 1, **_audit_values(values, rows, examples)},
    )
    return rubric


@transaction.atomic
def rubric_update(
    *,
    rubric,
    actor,
    name,
    criteria,
    description="",
    pass_threshold=Decimal("0.8"),
    grader_model="claude-haiku-4-5",
    grader_instructions="",
    max_iterations=3,
    min_kappa=None,
    golden_examples=(),
):
    """Save the rubric as a new immutable version; None when nothing changed. Earlier
    versions and the evaluations pinned to them are left exactly as they were."""
    rubric = Rubric.objects.select_for_update().get(pk=rubric.pk)
    if rubric.is_archived:
        raise ValidationError("An archived rubric cannot be edited; restore it first.")
    values, rows, examples = _normalized(
        {
            "name": name,
            "description": description,
            "pass_threshold": pass_threshold,
            "grader_model": grader_model,
            "grader_instructions": grader_instructions,
            "max_iterations": max_iterations,
            "min_kappa": min_kappa,
        },
        list(criteria),
        list(golden_examples),
    )
    version, criterion_rows, golden_rows = _validated_objects(values, rows, examples)
    ensure_unique_name(Rubric, rubric.team, values["name"], noun="a rubric", exclude_pk=rubric.pk)
    current = rubric.current_version
    before = _snapshot(current) if current else None
    if before is not None and _comparable(before) == _comparable((values, rows, examples)):
        return None
    version = _save_version(rubric, actor, version, criterion_rows, golden_rows)
    rubric.name = values["name"]
    rubric.description = values["description"]
    rubric.current_version = version
    rubric.save(update_fields=["name", "description", "current_version", "updated_at"])
    audit_record(
        team=rubric.team,
        actor=actor,
        verb="rubric.update",
        obj=rubric,
        before={"version": current.number, **_audit_values(*before)} if current else {},
        after={"version": version.number, **_audit_values(values, rows, examples)},
    )
    return version


@transaction.atomic
def rubric_set_archived(*, rubric, actor, archived):
    rubric = Rubric.objects.select_for_update().get(pk=rubric.pk)
    if rubric.is_archived == archived:
        return rubric
    rubric.archived_at = timezone.now() if archived else None
    rubric.save(update_fields=["archived_at", "updated_at"])
    audit_record(
        team=rubric.team,
        actor=actor,
        verb="rubric.archive" if archived else "rubric.restore",
        obj=rubric,
        after={"archived": archived},
    )
    return rubric


# Evaluations and the outcome loop's records.


def _actor_fields(actor):
    if getattr(actor, "is_authenticated", False):
        return {"actor": actor}
    return {"actor": None, "actor_label": LOOP_ACTOR}


@transaction.atomic
def evaluation_create(*, team, rubric, task, actor=None, agent_version=None):
    """An evaluation of the rubric's current version, running until its last iteration."""
    if rubric.team_id != team.pk:
        raise ValidationError("The rubric belongs to another team.")
    if rubric.is_archived:
        raise ValidationError(f"The rubric {rubric.name!r} is archived.")
    if rubric.current_version_id is None:
        raise ValidationError(f"The rubric {rubric.name!r} has no version.")
    if agent_version is not None and agent_version.agent.team_id != team.pk:
        raise ValidationError("The agent belongs to another team.")
    evaluation = Evaluation.objects.create(
        team=team,
        rubric_version_id=rubric.current_version_id,
        task=task,
        agent=agent_version.agent if agent_version is not None else None,
        agent_version=agent_version,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit_record(
        team=team,
        verb="evaluation.create",
        obj=evaluation,
        after={"rubric_version": rubric.current_version_id},
        **_actor_fields(actor),
    )
    return evaluation


def _usage_fields(prefix, usage):
    usage = usage or {}
    return {
        f"{prefix}_input_tokens": int(usage.get("input_tokens") or 0),
        f"{prefix}_output_tokens": int(usage.get("output_tokens") or 0),
        f"{prefix}_cost_usd": Decimal(str(usage.get("cost_usd") or 0)),
    }


def _lock_running(evaluation):
    evaluation = Evaluation.objects.select_for_update().get(pk=evaluation.pk)
    if evaluation.status != EvaluationStatus.RUNNING:
        raise ValidationError(f"Evaluation {evaluation.pk} is no longer running.")
    return evaluation


@transaction.atomic
def iteration_record(
    *, evaluation, output, grade, worker_usage=None, grader_usage=None, grader_attempts=1
):
    """Keep one graded iteration and return it; its `verdict` tells the loop what next.

    `grade` is a ParsedGrade from `grading.parse_grade`. Usage mappings carry
    input_tokens, output_tokens and cost_usd. A terminal verdict (anything but
    needs_revision) finishes the evaluation through `evaluation_finish`."""
    evaluation = _lock_running(evaluation)
    version = evaluation.rubric_version
    number = evaluation.iterations_count + 1
    if number > version.max_iterations:
        raise ValidationError(
            f"Evaluation {evaluation.pk} already has its {version.max_iterations} iterations."
        )
    criteria = grading.criteria_of(version)
    verdict = grading.verdict_for(version, grade, number)
    score = grading.weighted_score(criteria, grade.score_map) if grade.applies else None
    iteration = Iteration.objects.create(
        evaluation=evaluation,
        number=number,
        output=output,
        grader_attempts=grader_attempts,
        applies=grade.applies,
        feedback=grade.feedback,
        weighted_score=score,
        verdict=verdict,
        **_usage_fields("worker", worker_usage),
        **_usage_fields("grader", grader_usage),
    )
    if grade.applies:
        CriterionScore.objects.bulk_create(
            CriterionScore(
                iteration=iteration,
                criterion=criterion,
                score=grade.scores[criterion.key].score,
                rationale=grade.scores[criterion.key].rationale,
            )
            for criterion in criteria
        )
    evaluation.iterations_count = number
    evaluation.weighted_score = score
    evaluation.verdict = verdict
    evaluation.save(update_fields=["iterations_count", "weighted_score", "verdict"])
    if verdict != Verdict.NEEDS_REVISION:
        _finish(evaluation, verdict, actor=None)
    return iteration


@transaction.atomic
def iteration_record_grader_error(
    *, evaluation, output, error, attempts, worker_usage=None, grader_usage=None
):
    """The grader kept failing on this output: keep the output and the error, and end the
    evaluation as grader_error (never as a failing grade)."""
    evaluation = _lock_running(evaluation)
    number = evaluation.iterations_count + 1
    iteration = Iteration.objects.create(
        evaluation=evaluation,
        number=number,
        output=output,
        grader_attempts=attempts,
        grader_error=error,
        verdict=Verdict.GRADER_ERROR,
        **_usage_fields("worker", worker_usage),
        **_usage_fields("grader", grader_usage),
    )
    evaluation.iterations_count = number
    evaluation.save(update_fields=["iterations_count"])
    _finish(evaluation, Verdict.GRADER_ERROR, actor=None, error=error)
    return iteration


def _finish(evaluation, verdict, *, actor, error=""):
    version = evaluation.rubric_version
    needs_human = (
        verdict in GRADE_VERDICTS
        and version.min_kappa is not None
        and not calibration.grader_trusted(version)
    )
    status = EvaluationStatus.PENDING_REVIEW if needs_human else EvaluationStatus.FINISHED
    evaluation.status = status
    evaluation.verdict = verdict
    evaluation.error = error
    evaluation.finished_at = timezone.now()
    evaluation.save(update_fields=["status", "verdict", "error", "finished_at"])
    audit_record(
        team=evaluation.team,
        verb="evaluation.finish",
        obj=evaluation,
        after={
            "verdict": verdict,
            "status": status,
            "iterations": evaluation.iterations_count,
            "weighted_score": str(evaluation.weighted_score)
            if evaluation.weighted_score is not None
            else None,
        },
        **_actor_fields(actor),
    )
    return evaluation


@transaction.atomic
def evaluation_finish(*, evaluation, verdict, actor=None, error=""):
    """End a running evaluation with `verdict`. A graded verdict of a rubric version whose
    grader has not shown its `min_kappa` (fewer than 20 reviews, or a lower kappa) waits in
    the review queue as pending_review; otherwise the evaluation is finished."""
    evaluation = _lock_running(evaluation)
    if verdict == Verdict.NEEDS_REVISION:
        raise ValidationError("needs_revision is not a final verdict.")
    return _finish(evaluation, Verdict(verdict), actor=actor, error=error)


def evaluation_interrupt(*, evaluation, actor=None):
    """The run was cancelled mid-loop: finish as interrupted, keeping every iteration."""
    return evaluation_finish(evaluation=evaluation, verdict=Verdict.INTERRUPTED, actor=actor)


def may_review(user, team):
    return Membership.objects.filter(
        team=team, user=user, role__in=[r for r in Role if r != Role.VIEWER]
    ).exists()


@transaction.atomic
def evaluation_assign(*, evaluation, actor, assignee):
    """Assign the evaluation to a reviewer of its team (None to unassign)."""
    evaluation = Evaluation.objects.select_for_update().get(pk=evaluation.pk)
    if assignee is not None and not may_review(assignee, evaluation.team):
        raise ValidationError(f"{assignee.get_username()} is not a reviewer in this team.")
    before = evaluation.assigned_to.get_username() if evaluation.assigned_to else None
    evaluation.assigned_to = assignee
    evaluation.save(update_fields=["assigned_to"])
    audit_record(
        team=evaluation.team,
        actor=actor,
        verb="evaluation.assign",
        obj=evaluation,
        before={"assigned_to": before},
        after={"assigned_to": assignee.get_username() if assignee else None},
    )
    return evaluation


def final_scores(evaluation):
    """The grader's criterion scores of the evaluation's last iteration, by criterion key."""
    return {
        score.criterion.key: score
        for score in CriterionScore.objects.filter(
            iteration__evaluation=evaluation,
            iteration__number=F("iteration__evaluation__iterations_count"),
        ).select_related("criterion")
    }


def _satisfied_score_errors(overrides):
    """A score a reviewer gives below its criterion's minimum never passes (the rubric says
    so), so it cannot come with a Satisfied verdict. A reviewer may disagree with the
    grader, not with the rubric's own rule."""
    return [
        f"{criterion.name}: {score} is below its minimum of {criterion.minimum}, so the output "
        "cannot be Satisfied. Give Max iterations reached (it did not pass), or a score at or "
        "above the minimum."
        for criterion, score, _ in overrides
        if criterion.minimum is not None and score < criterion.minimum
    ]


@transaction.atomic
def evaluation_review(*, evaluation, reviewer, verdict=None, scores=None, note=""):
    """A human review of the final output. With neither `verdict` nor `scores` it agrees
    with the grader. `scores` maps criterion keys to the reviewer's scores; only those that
    differ from the grader's are kept, as overrides beside the grader's untouched rows."""
    evaluation = Evaluation.objects.select_for_update().get(pk=evaluation.pk)
    if not evaluation.is_reviewable:
        raise ValidationError("Only a finished, graded evaluation can be reviewed.")
    if not may_review(reviewer, evaluation.team):
        raise ValidationError(f"{reviewer.get_username()} is not a reviewer in this team.")
    verdict = verdict or evaluation.verdict
    if verdict not in GRADE_VERDICTS:
        raise ValidationError({"verdict": f"{verdict!r} is not a verdict a reviewer can give."})
    grader = final_scores(evaluation)
    errors, overrides = [], []
    for key, score in (scores or {}).items():
        grader_score = grader.get(key)
        if grader_score is None:
            errors.append(f"The grader gave no score for {key!r} to override.")
            continue
        criterion = grader_score.criterion
        if isinstance(score, bool) or not isinstance(score, int):
            errors.append(f"{criterion.name}: the score must be a whole number.")
        elif not 0 <= score <= criterion.scale_max:
            errors.append(f"{criterion.name}: the score must be 0 to {criterion.scale_max}.")
        elif score != grader_score.score:
            overrides.append((criterion, score, grader_score.score))
    if not errors and overrides and verdict == Verdict.SATISFIED:
        errors = _satisfied_score_errors(overrides)
    if errors:
        raise ValidationError({"scores": errors})
    agreed = verdict == evaluation.verdict and not overrides
    review = HumanReview.objects.create(
        evaluation=evaluation,
        reviewer=reviewer,
        agreed=agreed,
        verdict=verdict,
        grader_verdict=evaluation.verdict,
        note=note.strip(),
    )
    HumanCriterionScore.objects.bulk_create(
        HumanCriterionScore(review=review, criterion=c, score=s, grader_score=g)
        for c, s, g in overrides
    )
    before_status = evaluation.status
    evaluation.human_verdict = verdict
    evaluation.human_agreed = agreed
    evaluation.reviewed_at = review.created_at
    evaluation.review_count = F("review_count") + 1
    evaluation.status = EvaluationStatus.FINISHED
    evaluation.save(
        update_fields=["human_verdict", "human_agreed", "reviewed_at", "review_count", "status"]
    )
    evaluation.refresh_from_db()
    audit_record(
        team=evaluation.team,
        actor=reviewer,
        verb="evaluation.review",
        obj=evaluation,
        before={
            "status": before_status,
            "verdict": evaluation.verdict,
            "scores": {c.key: g for c, _, g in overrides},
        },
        after={
            "agreed": agreed,
            "verdict": verdict,
            "scores": {c.key: s for c, s, _ in overrides},
            "note": review.note,
            "review": review.pk,
        },
    )
    return review


def human_scores(review, grader_scores):
    """The reviewer's score for every criterion: the override where there is one, else the
    grader's (which the reviewer accepted)."""
    overridden = {o.criterion.key: o.score for o in review.overrides.all()}
    return {key: overridden.get(key, s.score) for key, s in grader_scores.items()}
