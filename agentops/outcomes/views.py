from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agentops.pagination import paginate
from agentops.teams.access import get_for_team, require_editor, require_viewer, team_queryset

from . import services
from .calibration import calibration_for
from .forms import RubricFilterForm, rubric_forms
from .models import Rubric, RubricVersion


def _rubrics(request):
    return team_queryset(request, Rubric).select_related("current_version")


@require_viewer
def rubric_list(request):
    form = RubricFilterForm(request.GET or None)
    rubrics = form.filter(
        _rubrics(request)
        .annotate(
            evaluation_count=Count("versions__evaluations", distinct=True),
            criterion_count=Count("current_version__criteria", distinct=True),
        )
        .order_by("name", "id")
    )
    page = paginate(request, rubrics)
    template = "outcomes/rubric_list.html#rubrics" if request.htmx else "outcomes/rubric_list.html"
    return render(request, template, {"form": form, "page": page})


def _form_errors(form, error):
    """Put a service's ValidationError on the form: by field where the form has it."""
    if hasattr(error, "error_dict"):
        for field, messages_ in error.message_dict.items():
            form.add_error(field if field in form.fields else None, messages_)
    else:
        form.add_error(None, error.messages)


def _save(request, rubric=None):
    form, criteria, golden = rubric_forms(request.POST, team=request.team)
    if form.is_valid() and criteria.is_valid() and golden.is_valid():
        values = {
            **form.version_values(),
            "criteria": criteria.rows(),
            "golden_examples": golden.rows(),
        }
        try:
            if rubric is None:
                rubric = services.rubric_create(team=request.team, actor=request.user, **values)
                messages.success(request, f"Created {rubric.name} (version 1).")
            else:
                version = services.rubric_update(rubric=rubric, actor=request.user, **values)
                if version is None:
                    messages.info(request, "Nothing changed; no new version was saved.")
                else:
                    messages.success(request, f"Saved {rubric.name} as version {version.number}.")
        except ValidationError as error:
            _form_errors(form, error)
        else:
            return None, redirect("rubrics:detail", pk=rubric.pk)
    return (form, criteria, golden), None


@require_editor
def rubric_create(request):
    if request.method == "POST":
        forms, response = _save(request)
        if response:
            return response
        status = 400
    else:
        forms, status = rubric_forms(team=request.team), 200
    form, criteria, golden = forms
    context = {"form": form, "criteria": criteria, "golden": golden, "rubric": None}
    return render(request, "outcomes/rubric_form.html", context, status=status)


@require_editor
def rubric_edit(request, pk):
    rubric = get_for_team(request, _rubrics(request), pk=pk)
    if rubric.is_archived:
        messages.error(request, "An archived rubric cannot be edited; restore it first.")
        return redirect("rubrics:detail", pk=rubric.pk)
    if request.method == "POST":
        forms, response = _save(request, rubric)
        if response:
            return response
        status = 400
    else:
        forms, status = rubric_forms(version=rubric.current_version, team=request.team), 200
    form, criteria, golden = forms
    context = {"form": form, "criteria": criteria, "golden": golden, "rubric": rubric}
    return render(request, "outcomes/rubric_form.html", context, status=status)


def _version_context(rubric, version):
    versions = list(
        rubric.versions.select_related("created_by")
        .annotate(evaluation_count=Count("evaluations"))
        .order_by("-number")
    )
    return {
        "rubric": rubric,
        "version": version,
        "criteria": list(version.criteria.all()),
        "golden_examples": list(version.golden_examples.all()),
        "versions": versions,
        "calibration": calibration_for(version),
    }


@require_viewer
def rubric_detail(request, pk):
    rubric = get_for_team(request, _rubrics(request), pk=pk)
    if rubric.current_version is None:
        raise Http404("This rubric has no version.")
    return render(
        request, "outcomes/rubric_detail.html", _version_context(rubric, rubric.current_version)
    )


@require_viewer
def rubric_version(request, pk, number):
    rubric = get_for_team(request, _rubrics(request), pk=pk)
    version = RubricVersion.objects.filter(rubric=rubric, number=number).first()
    if version is None:
        raise Http404("No such version.")
    return render(request, "outcomes/rubric_detail.html", _version_context(rubric, version))


@require_editor
@require_POST
def rubric_archive(request, pk):
    rubric = get_for_team(request, Rubric, pk=pk)
    archived = not rubric.is_archived
    services.rubric_set_archived(rubric=rubric, actor=request.user, archived=archived)
    messages.success(request, f"{'Archived' if archived else 'Restored'} {rubric.name}.")
    return redirect("rubrics:detail", pk=rubric.pk)
