import zoneinfo
from functools import cached_property

from django import forms
from django.db.models import Q

from agentops.agents.models import Agent, AgentVersion
from agentops.filtering import FilterForm
from agentops.outcomes.models import Rubric

from .models import (
    LIMIT_RANGES,
    DelegationStatus,
    OverlapPolicy,
    ScheduleKind,
    Workflow,
    WorkflowMode,
)
from .services import INTERVAL_TOO_LONG, MAX_INTERVAL_MINUTES, Specialist, cron_errors


class RubricChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return f"{obj.name} (archived)" if obj.is_archived else obj.name


def _rubric_choices(form, team):
    """The team's gradable rubrics, plus the one the form already names (a rubric archived
    since the version was saved): it stays selected, and saving it gets the service's
    "archived" error instead of the form silently dropping it."""
    field = form.add_prefix("rubric")
    named = form.data.get(field) if form.is_bound else form.initial.get("rubric")
    gradable = Q(archived_at__isnull=True, current_version__isnull=False)
    if str(named or "").isdigit():
        gradable |= Q(pk=int(named))
    return Rubric.objects.filter(gradable, team=team).order_by("name")


def _team_agents(team):
    return Agent.objects.filter(team=team, archived_at__isnull=True).order_by("name")


def _team_versions(team):
    return (
        AgentVersion.objects.filter(agent__team=team)
        .select_related("agent")
        .order_by("agent__name", "agent_id", "-number")
    )


def team_version_choices(team):
    """The team's agent versions as dropdown choices grouped by agent (one query): which
    version belongs to which agent is visible before the form refuses a mismatch."""
    groups = {}
    for version in _team_versions(team):
        groups.setdefault(version.agent, []).append((version.pk, f"v{version.number}"))
    return [(agent.name, options) for agent, options in groups.items()]


def _offer_versions(field, team, choices):
    field.queryset = _team_versions(team)
    field.choices = [("", field.empty_label), *choices]


class WorkflowForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    lead_agent = forms.ModelChoiceField(queryset=Agent.objects.none(), label="Lead agent")
    lead_pinned_version = forms.ModelChoiceField(
        queryset=AgentVersion.objects.none(),
        required=False,
        label="Lead version",
        empty_label="Follow the latest version",
    )
    mode = forms.ChoiceField(choices=WorkflowMode.choices, initial=WorkflowMode.DELEGATE)
    max_parallel = forms.IntegerField(
        label="Max parallel sub-agents", initial=5, help_text="1 to 50, across the whole run."
    )
    max_children = forms.IntegerField(
        label="Max sub-agents per run", initial=10, help_text="1 to 200."
    )
    max_depth = forms.IntegerField(
        label="Max delegation depth",
        initial=1,
        help_text="1 to 5. At 1 only the lead delegates; above it sub-agents may too.",
    )
    budget_tokens = forms.IntegerField(
        required=False, min_value=1, label="Run token budget", help_text="Empty: no limit."
    )
    budget_cost_usd = forms.DecimalField(
        required=False,
        min_value=0.000001,
        error_messages={"min_value": "Give at least $0.000001, or leave it empty for no limit."},
        max_digits=12,
        decimal_places=6,
        label="Run cost budget (USD)",
        help_text="Empty: no limit.",
    )
    child_budget_tokens = forms.IntegerField(
        required=False,
        min_value=1,
        label="Token budget per sub-agent",
        help_text="A sub-agent past it stops and its delegation returns an error.",
    )
    rubric = RubricChoiceField(
        queryset=Rubric.objects.none(),
        required=False,
        empty_label="No grading",
        label="Rubric for the final result",
        help_text="A grader scores the lead's answer against it and the lead revises until it "
        "passes or the rubric's iteration cap is reached.",
    )

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        # Other teams' agents are not offered; a forged id is "not one of the choices".
        self.fields["lead_agent"].queryset = _team_agents(team)
        _offer_versions(self.fields["lead_pinned_version"], team, team_version_choices(team))
        self.fields["rubric"].queryset = _rubric_choices(self, team)
        for field, (low, high) in LIMIT_RANGES.items():
            self.fields[field].validators.append(_range_validator(low, high))
            self.fields[field].widget.attrs.update({"min": low, "max": high})

    def clean(self):
        data = super().clean()
        lead, pinned = data.get("lead_agent"), data.get("lead_pinned_version")
        if lead and pinned and pinned.agent_id != lead.pk:
            self.add_error("lead_pinned_version", f"Choose a version of {lead.name}.")
        return data


def _range_validator(low, high):
    def validate(value):
        if value is not None and not low <= value <= high:
            raise forms.ValidationError(f"Must be between {low} and {high}.")

    return validate


class RosterEntryForm(forms.Form):
    agent = forms.ModelChoiceField(queryset=Agent.objects.none(), label="Specialist")
    pinned_version = forms.ModelChoiceField(
        queryset=AgentVersion.objects.none(),
        required=False,
        label="Version",
        empty_label="Follow the latest version",
    )
    role_description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Role (the lead reads this)",
    )
    rubric = RubricChoiceField(
        queryset=Rubric.objects.none(),
        required=False,
        empty_label="No grading",
        label="Rubric",
        help_text="The specialist revises until its answer passes, before the lead gets it.",
    )

    def __init__(self, *args, team, version_choices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = _team_agents(team)
        _offer_versions(self.fields["pinned_version"], team, version_choices)
        self.fields["rubric"].queryset = _rubric_choices(self, team)

    def clean(self):
        data = super().clean()
        agent, pinned = data.get("agent"), data.get("pinned_version")
        if agent and pinned and pinned.agent_id != agent.pk:
            self.add_error("pinned_version", f"Choose a version of {agent.name}.")
        return data


class BaseRosterFormSet(forms.BaseFormSet):
    def __init__(self, *args, team, **kwargs):
        self.team = team
        super().__init__(*args, **kwargs)

    @cached_property
    def version_choices(self):
        return team_version_choices(self.team)  # once for all its forms

    def get_form_kwargs(self, index):
        return {
            **super().get_form_kwargs(index),
            "team": self.team,
            "version_choices": self.version_choices,
        }

    @property
    def empty_form(self):
        form = self.form(
            auto_id=self.auto_id,
            prefix=self.add_prefix("__prefix__"),
            empty_permitted=True,
            use_required_attribute=False,
            team=self.team,
            version_choices=self.version_choices,
        )
        self.add_fields(form, None)
        return form

    def specialists(self):
        return [
            Specialist(
                agent=form.cleaned_data["agent"],
                pinned_version=form.cleaned_data.get("pinned_version"),
                role_description=form.cleaned_data["role_description"],
                rubric=form.cleaned_data.get("rubric"),
            )
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("agent")
        ]


RosterFormSet = forms.formset_factory(
    RosterEntryForm, formset=BaseRosterFormSet, extra=2, can_delete=True, max_num=50
)


def roster_initial(version):
    return [
        {
            "agent": entry.agent_id,
            "pinned_version": entry.pinned_version_id,
            "role_description": entry.role_description,
            "rubric": entry.rubric_id,
        }
        for entry in version.roster.all()
    ]


def workflow_initial(version):
    return {
        "name": version.name,
        "description": version.description,
        "lead_agent": version.lead_agent_id,
        "lead_pinned_version": version.lead_pinned_version_id,
        "mode": version.mode,
        "max_parallel": version.max_parallel,
        "max_children": version.max_children,
        "max_depth": version.max_depth,
        "budget_tokens": version.budget_tokens,
        "budget_cost_usd": version.budget_cost_usd,
        "child_budget_tokens": version.child_budget_tokens,
        "rubric": version.rubric_id,
    }


class WorkflowFilterForm(FilterForm):
    q = forms.CharField(required=False, label="Name or text")
    mode = forms.ChoiceField(required=False, choices=[("", "Any mode"), *WorkflowMode.choices])
    status = forms.ChoiceField(
        required=False, choices=[("", "Active"), ("archived", "Archived"), ("all", "All")]
    )

    def filter(self, queryset):
        data = self.filter_values()
        if data["q"]:
            queryset = queryset.filter(
                Q(name__icontains=data["q"]) | Q(description__icontains=data["q"])
            )
        if data["mode"]:
            queryset = queryset.filter(current_version__mode=data["mode"])
        if data["status"] == "archived":
            queryset = queryset.filter(archived_at__isnull=False)
        elif data["status"] != "all":
            queryset = queryset.filter(archived_at__isnull=True)
        return queryset


class CompareForm(forms.Form):
    a = forms.TypedChoiceField(coerce=int, label="From version")
    b = forms.TypedChoiceField(coerce=int, label="To version")

    def __init__(self, *args, numbers, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(n, f"v{n}") for n in numbers]
        self.fields["a"].choices = choices
        self.fields["b"].choices = choices


class WorkflowRunForm(forms.Form):
    input = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), label="Input")


class DelegationFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *DelegationStatus.choices]
    )


TIMEZONE_CHOICES = [(name, name) for name in sorted(zoneinfo.available_timezones())]


class ScheduleForm(forms.Form):
    name = forms.CharField(max_length=120)
    workflow = forms.ModelChoiceField(
        queryset=Workflow.objects.none(), required=False, empty_label="—"
    )
    agent = forms.ModelChoiceField(queryset=Agent.objects.none(), required=False, empty_label="—")
    input = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Input text")
    rubric = RubricChoiceField(
        queryset=Rubric.objects.none(),
        required=False,
        empty_label="No grading",
        help_text="Grade each run's final output against this rubric (it is revised until it "
        "passes or the rubric's iteration cap). For a workflow it replaces the workflow's own "
        "final-result rubric.",
    )
    kind = forms.ChoiceField(choices=ScheduleKind.choices, initial=ScheduleKind.CRON)
    cron = forms.CharField(
        required=False,
        max_length=120,
        label="Cron expression",
        help_text="Five fields: minute hour day-of-month month day-of-week, e.g. 0 9 * * mon-fri",
    )
    every_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_INTERVAL_MINUTES,
        error_messages={"max_value": INTERVAL_TOO_LONG},
        label="Every N minutes",
    )
    timezone = forms.ChoiceField(choices=TIMEZONE_CHOICES, initial="UTC", label="Time zone")
    overlap = forms.ChoiceField(choices=OverlapPolicy.choices, initial=OverlapPolicy.SKIP)

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["workflow"].queryset = Workflow.objects.filter(
            team=team, archived_at__isnull=True
        )
        self.fields["agent"].queryset = _team_agents(team)
        self.fields["rubric"].queryset = _rubric_choices(self, team)

    def clean(self):
        data = super().clean()
        if data.get("workflow") and data.get("agent"):
            self.add_error("workflow", "Choose either a workflow or an agent, not both.")
        elif not data.get("workflow") and not data.get("agent"):
            self.add_error("workflow", "Choose the workflow or the agent this schedule runs.")
        kind = data.get("kind")
        # The other kind's field, filled in, would be dropped on save without a word.
        if kind == ScheduleKind.CRON:
            problem = cron_errors(data.get("cron", ""))
            if problem:
                self.add_error("cron", problem)
            if data.get("every_minutes"):
                self.add_error(
                    "every_minutes",
                    "A cron schedule runs on its expression: clear this, or choose the "
                    "interval kind.",
                )
        elif kind == ScheduleKind.INTERVAL:
            if not data.get("every_minutes") and "every_minutes" not in self.errors:
                # (not when already said, e.g. "at least 1")
                self.add_error("every_minutes", "Give an interval of at least one minute.")
            if (data.get("cron") or "").strip():
                self.add_error(
                    "cron",
                    "An interval schedule runs every N minutes: clear this, or choose the "
                    "cron kind.",
                )
        return data


def schedule_initial(schedule):
    return {
        "name": schedule.name,
        "workflow": schedule.workflow_id,
        "agent": schedule.agent_id,
        "input": schedule.input,
        "rubric": schedule.rubric_id,
        "kind": schedule.kind,
        "cron": schedule.cron,
        "every_minutes": schedule.every_minutes,
        "timezone": schedule.timezone,
        "overlap": schedule.overlap,
    }


class ScheduleFilterForm(FilterForm):
    q = forms.CharField(required=False, label="Name")
    state = forms.ChoiceField(
        required=False, choices=[("", "Any state"), ("enabled", "Enabled"), ("paused", "Paused")]
    )

    def filter(self, queryset):
        data = self.filter_values()
        if data["q"]:
            queryset = queryset.filter(name__icontains=data["q"])
        if data["state"] == "enabled":
            queryset = queryset.filter(enabled=True)
        elif data["state"] == "paused":
            queryset = queryset.filter(enabled=False)
        return queryset
