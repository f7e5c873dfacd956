"""The Django admin for outcomes.

Rubric versions are immutable, so the admin never edits one: "Add rubric version" (with
inline criteria and golden examples) saves through the same services as the browser,
`rubric_create` for a new rubric or `rubric_update` for a new version of an existing one.
Opening a rubric's "new version" link pre-fills that page from its current version.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html

from agentops.llm.catalogue import model_choices
from agentops.teams.models import Team

from . import services
from .models import (
    Criterion,
    CriterionScore,
    Evaluation,
    GoldenExample,
    HumanCriterionScore,
    HumanReview,
    Iteration,
    Rubric,
    RubricVersion,
)


class RubricVersionAdminForm(forms.ModelForm):
    team = forms.ModelChoiceField(
        queryset=Team.objects.all(),
        required=False,
        help_text="For a new rubric. Leave empty when adding a version to an existing rubric.",
    )

    class Meta:
        model = RubricVersion
        fields = [
            "rubric",
            "team",
            "name",
            "description",
            "pass_threshold",
            "max_iterations",
            "grader_model",
            "grader_instructions",
            "min_kappa",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "rubric" not in self.fields:
            return  # the read-only view of a saved version
        self.fields["rubric"].required = False
        self.fields["rubric"].help_text = "Leave empty to create a new rubric."
        # The admin serves every team; the catalogue is the same for all of them today.
        self.fields["grader_model"] = forms.ChoiceField(
            choices=model_choices(None),
            initial=RubricVersion._meta.get_field("grader_model").default,
            label="Grader model",
        )

    def clean(self):
        data = super().clean()
        rubric, team, name = data.get("rubric"), data.get("team"), data.get("name")
        if rubric is None and team is None:
            self.add_error("team", "Choose the team of the new rubric, or an existing rubric.")
        if rubric is not None and rubric.is_archived:
            self.add_error("rubric", "An archived rubric cannot be edited; restore it first.")
        owner = rubric.team if rubric is not None else team
        if owner is not None and name:
            clash = Rubric.objects.filter(team=owner, name__iexact=name.strip())
            if rubric is not None:
                clash = clash.exclude(pk=rubric.pk)
            if clash.exists():
                self.add_error("name", f"This team already has a rubric named {name.strip()!r}.")
        return data


class CriterionInlineFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        if any(self.errors):
            return
        seen, kept = set(), 0
        for form in self.forms:
            if not form.cleaned_data or form.cleaned_data.get("DELETE"):
                continue
            kept += 1
            key = services.criterion_key(form.cleaned_data["name"])
            if key in seen:
                form.add_error("name", "Another criterion already has this name.")
            seen.add(key)
        if not kept:
            raise ValidationError("A rubric needs at least one criterion.")


class _CreateOnlyInline:
    """Rows of an immutable version: written once, on the add page, then read-only."""

    def has_change_permission(self, request, obj=None):
        return obj is None

    def has_add_permission(self, request, obj=None):
        return obj is None

    def has_delete_permission(self, request, obj=None):
        return obj is None

    def get_extra(self, request, obj=None, **kwargs):
        if obj is not None:
            return 0
        return len(getattr(request, "_prefill", {}).get(self.model.__name__, [])) + 1


class CriterionInline(_CreateOnlyInline, admin.TabularInline):
    model = Criterion
    formset = CriterionInlineFormSet
    fields = ["name", "guidance", "weight", "scale_max", "minimum"]


class GoldenExampleInline(_CreateOnlyInline, admin.StackedInline):
    model = GoldenExample
    fields = ["output", "expected_verdict", "note"]


def _rows(formset, fields):
    return [
        {field: form.cleaned_data.get(field) for field in fields}
        for form in formset.forms
        if form.cleaned_data and not form.cleaned_data.get("DELETE")
    ]


@admin.register(RubricVersion)
class RubricVersionAdmin(admin.ModelAdmin):
    form = RubricVersionAdminForm
    list_display = ["__str__", "rubric", "number", "pass_threshold", "max_iterations", "created_at"]
    list_filter = ["rubric__team", "grader_model"]
    search_fields = ["name", "rubric__name", "description"]
    list_select_related = ["rubric"]
    inlines = [CriterionInline, GoldenExampleInline]

    def has_change_permission(self, request, obj=None):
        return False  # a saved version is immutable

    def has_delete_permission(self, request, obj=None):
        return False  # evaluations pin versions

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        rubric = Rubric.objects.filter(pk=request.GET.get("rubric") or None).first()
        if rubric is not None and rubric.current_version is not None:
            version = rubric.current_version
            for field in services.VERSION_FIELDS:
                initial[field] = getattr(version, field)
        return initial

    def _prefill(self, request):
        """Inline rows copied from the current version of ?rubric=<id>."""
        if not hasattr(request, "_prefill"):
            request._prefill = {}
            rubric = Rubric.objects.filter(pk=request.GET.get("rubric") or None).first()
            if request.method == "GET" and rubric and rubric.current_version:
                version = rubric.current_version
                request._prefill = {
                    "Criterion": [
                        {f: getattr(c, f) for f in CriterionInline.fields}
                        for c in version.criteria.all()
                    ],
                    "GoldenExample": [
                        {f: getattr(g, f) for f in GoldenExampleInline.fields}
                        for g in version.golden_examples.all()
                    ],
                }
        return request._prefill

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        rows = self._prefill(request).get(inline.model.__name__)
        if rows:
            kwargs["initial"] = rows
        return kwargs

    def get_inline_instances(self, request, obj=None):
        self._prefill(request)
        return super().get_inline_instances(request, obj)

    def construct_change_message(self, request, form, formsets, add=False):
        # The inline formsets are never saved themselves (the service writes the rows).
        return [{"added": {}}]

    def save_model(self, request, obj, form, change):
        """Nothing here: the version is written with its criteria in save_related."""

    def save_related(self, request, form, formsets, change):
        data = form.cleaned_data
        by_model = {formset.model: formset for formset in formsets}
        values = {field: data.get(field) for field in services.VERSION_FIELDS}
        values["criteria"] = _rows(by_model[Criterion], CriterionInline.fields)
        values["golden_examples"] = _rows(by_model[GoldenExample], GoldenExampleInline.fields)
        rubric = data.get("rubric")
        if rubric is None:
            rubric = services.rubric_create(team=data["team"], actor=request.user, **values)
            version = rubric.current_version
        else:
            version = services.rubric_update(rubric=rubric, actor=request.user, **values)
            if version is None:
                messages.info(request, "Nothing changed; no new version was saved.")
                version = Rubric.objects.get(pk=rubric.pk).current_version
        # The admin logs and redirects to the object it was given: make it the new version.
        form.instance.pk = version.pk
        form.instance.rubric = version.rubric
        form.instance.number = version.number


@admin.register(Rubric)
class RubricAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "current_version", "archived_at", "updated_at"]
    list_filter = ["team", "archived_at"]
    search_fields = ["name", "slug", "description"]
    list_select_related = ["team", "current_version"]
    fields = ["team", "name", "slug", "description", "new_version_link", "archived_at"]
    readonly_fields = fields
    actions = ["archive", "restore"]

    class VersionInline(admin.TabularInline):
        model = RubricVersion
        fields = ["number", "name", "pass_threshold", "max_iterations", "created_by", "created_at"]
        readonly_fields = fields
        extra = 0
        can_delete = False
        show_change_link = True

        def has_add_permission(self, request, obj=None):
            return False

    inlines = [VersionInline]

    def add_view(self, request, form_url="", extra_context=None):
        return redirect(reverse("admin:outcomes_rubricversion_add"))

    @admin.display(description="Edit")
    def new_version_link(self, obj):
        url = reverse("admin:outcomes_rubricversion_add") + f"?rubric={obj.pk}"
        return format_html('<a href="{}">Save a new version of this rubric</a>', url)

    @admin.action(description="Archive the selected rubrics")
    def archive(self, request, queryset):
        for rubric in queryset:
            services.rubric_set_archived(rubric=rubric, actor=request.user, archived=True)

    @admin.action(description="Restore the selected rubrics")
    def restore(self, request, queryset):
        for rubric in queryset:
            services.rubric_set_archived(rubric=rubric, actor=request.user, archived=False)


@admin.register(Criterion)
class CriterionAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "weight", "scale_max", "minimum"]
    list_filter = ["version__rubric__team"]
    search_fields = ["name", "guidance", "version__rubric__name"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what the grader and reviewers did: looked at here, changed by services."""

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class IterationInline(admin.TabularInline):
    model = Iteration
    fields = ["number", "verdict", "weighted_score", "grader_attempts", "grader_error"]
    readonly_fields = fields
    extra = 0
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Evaluation)
class EvaluationAdmin(_ReadOnlyAdmin):
    list_display = [
        "id",
        "team",
        "rubric_version",
        "agent",
        "run",
        "status",
        "verdict",
        "weighted_score",
        "human_verdict",
        "human_agreed",
        "created_at",
    ]
    list_filter = ["team", "status", "verdict", "human_agreed"]
    search_fields = ["task", "rubric_version__rubric__name", "agent__name", "run__id"]
    list_select_related = ["team", "rubric_version", "agent"]
    date_hierarchy = "created_at"
    inlines = [IterationInline]


@admin.register(Iteration)
class IterationAdmin(_ReadOnlyAdmin):
    list_display = ["evaluation", "number", "verdict", "weighted_score", "grader_attempts"]
    list_filter = ["verdict", "evaluation__team"]
    search_fields = ["output", "feedback", "grader_error"]


@admin.register(CriterionScore)
class CriterionScoreAdmin(_ReadOnlyAdmin):
    list_display = ["iteration", "criterion", "score"]
    list_filter = ["iteration__evaluation__team"]
    search_fields = ["criterion__name", "rationale"]


@admin.register(HumanReview)
class HumanReviewAdmin(_ReadOnlyAdmin):
    list_display = ["evaluation", "reviewer", "agreed", "grader_verdict", "verdict", "created_at"]
    list_filter = ["agreed", "verdict", "evaluation__team"]
    search_fields = ["note", "reviewer__username"]


@admin.register(HumanCriterionScore)
class HumanCriterionScoreAdmin(_ReadOnlyAdmin):
    list_display = ["review", "criterion", "grader_score", "score"]
    list_filter = ["review__evaluation__team"]
    search_fields = ["criterion__name"]


@admin.register(GoldenExample)
class GoldenExampleAdmin(_ReadOnlyAdmin):
    list_display = ["__str__", "version", "expected_verdict", "note"]
    list_filter = ["expected_verdict", "version__rubric__team"]
    search_fields = ["output", "note"]
