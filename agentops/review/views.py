"""The review queue, the evaluation page, human reviews and exports. Views only: the rows
and the services that write them live in agentops.outcomes."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from agentops.outcomes import services
from agentops.outcomes.calibration import calibration_for
from agentops.outcomes.diff import line_diff
from agentops.outcomes.models import CriterionScore, Evaluation
from agentops.pagination import paginate
from agentops.teams.access import get_for_team, require_reviewer, require_viewer, team_queryset

from . import exports
from .forms import AssignForm, QueueFilterForm, ReviewForm, neighbours


def _evaluations(request):
    return team_queryset(request, Evaluation).select_related(
        "rubric_version__rubric", "agent", "agent_version", "assigned_to"
    )


def _filter_form(request):
    return QueueFilterForm(request.GET or None, team=request.team, user=request.user)


@require_viewer
def queue(request):
    form = _filter_form(request)
    page = paginate(request, form.filter(_evaluations(request)))
    template = "review/queue.html#evaluations" if request.htmx else "review/queue.html"
    return render(request, template, {"form": form, "page": page})


def _with_query(url, request):
    query = request.GET.urlencode()
    return f"{url}?{query}" if query else url


def _evaluation_url(pk, request):
    """An evaluation's page, keeping the queue's filters so n and p stay within them."""
    return _with_query(reverse("review:evaluation", args=[pk]), request)


def _evaluation_context(request, evaluation, review_form=None, assign_form=None):
    iterations = list(
        evaluation.iterations.order_by("number").prefetch_related(
            Prefetch("scores", queryset=CriterionScore.objects.select_related("criterion"))
        )
    )
    previous_output = None
    timeline = []
    for iteration in iterations:
        diff = line_diff(previous_output, iteration.output) if previous_output is not None else None
        timeline.append({"iteration": iteration, "diff": diff})
        previous_output = iteration.output

    grader_scores = services.final_scores(evaluation)
    reviews = list(
        evaluation.reviews.select_related("reviewer").prefetch_related("overrides__criterion")
    )
    latest_overrides = {o.criterion.key: o for o in reviews[0].overrides.all()} if reviews else {}
    score_rows = [
        {"grader": score, "override": latest_overrides.get(key)}
        for key, score in grader_scores.items()
    ]
    may_review = request.membership.can_review and evaluation.is_reviewable
    if may_review and review_form is None:
        review_form = ReviewForm(
            evaluation=evaluation,
            grader_scores=grader_scores,
            latest_review=reviews[0] if reviews else None,
        )
    if request.membership.can_review and assign_form is None:
        assign_form = AssignForm(
            team=request.team,
            initial={"assignee": evaluation.assigned_to.username if evaluation.assigned_to else ""},
        )
    queue = _filter_form(request).filter(_evaluations(request))
    previous, following = neighbours(queue, evaluation)
    return {
        "evaluation": evaluation,
        "version": evaluation.rubric_version,
        "final": iterations[-1] if iterations else None,
        "timeline": timeline,
        "score_rows": score_rows,
        "reviews": reviews,
        "review_form": review_form if may_review else None,
        "assign_form": assign_form,
        "calibration": calibration_for(evaluation.rubric_version),
        "previous_url": _evaluation_url(previous.pk, request) if previous else "",
        "next_url": _evaluation_url(following.pk, request) if following else "",
        "queue_url": _with_query(reverse("review:queue"), request),
        "query": request.GET.urlencode(),
    }


@require_viewer
def evaluation_detail(request, pk):
    evaluation = get_for_team(request, _evaluations(request), pk=pk)
    return render(request, "review/evaluation.html", _evaluation_context(request, evaluation))


@require_reviewer
@require_POST
def evaluation_review(request, pk):
    evaluation = get_for_team(request, _evaluations(request), pk=pk)
    if not evaluation.is_reviewable:
        messages.error(request, "Only a finished, graded evaluation can be reviewed.")
        return redirect(_evaluation_url(evaluation.pk, request))
    form = ReviewForm(
        request.POST, evaluation=evaluation, grader_scores=services.final_scores(evaluation)
    )
    if form.is_valid():
        try:
            review = services.evaluation_review(
                evaluation=evaluation, reviewer=request.user, **form.review_values()
            )
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            if review.agreed:
                messages.success(request, "Review saved: you agreed with the grader.")
            else:
                messages.success(request, "Review saved with your overrides.")
            return redirect(_evaluation_url(evaluation.pk, request))
    context = _evaluation_context(request, evaluation, review_form=form)
    return render(request, "review/evaluation.html", context, status=400)


@require_reviewer
@require_POST
def evaluation_assign(request, pk):
    evaluation = get_for_team(request, _evaluations(request), pk=pk)
    form = AssignForm(request.POST, team=request.team)
    if form.is_valid():
        assignee = form.chosen_user()
        try:
            services.evaluation_assign(evaluation=evaluation, actor=request.user, assignee=assignee)
        except ValidationError as error:
            form.add_error("assignee", error.messages)
        else:
            who = assignee.get_username() if assignee else "no one"
            messages.success(request, f"Evaluation {evaluation.pk} is assigned to {who}.")
            return redirect(_evaluation_url(evaluation.pk, request))
    context = _evaluation_context(request, evaluation, assign_form=form)
    return render(request, "review/evaluation.html", context, status=400)


def _export_name(extension):
    return f"evaluations-{timezone.now():%Y%m%d-%H%M%S}.{extension}"


@require_viewer
def export_csv(request):
    evaluations = _filter_form(request).filter(team_queryset(request, Evaluation))
    response = StreamingHttpResponse(
        exports.csv_lines(evaluations), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{_export_name("csv")}"'
    return response


@require_viewer
def export_jsonl(request):
    evaluations = _filter_form(request).filter(team_queryset(request, Evaluation))
    response = StreamingHttpResponse(
        exports.jsonl_lines(evaluations), content_type="application/jsonl; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{_export_name("jsonl")}"'
    return response
