from decimal import Decimal

from django import forms
from django.db.models import Q

from agentops.agents.models import Agent
from agentops.filtering import FilterForm

from .models import RunStatus


def cost_limit_field(*, decimal_places, label, help_text):
    """An optional limit in USD: empty means none, else at least its smallest unit."""
    smallest = Decimal(1).scaleb(-decimal_places)
    return forms.DecimalField(
        required=False,
        min_value=smallest,
        error_messages={"min_value": f"Give at least ${smallest}, or leave it empty for no limit."},
        max_digits=12,
        decimal_places=decimal_places,
        label=label,
        help_text=help_text,
    )


class RunStartForm(forms.Form):
    input = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), help_text="What the agent should work on."
    )
    budget_tokens = forms.IntegerField(
        required=False,
        min_value=1,
        label="Token budget",
        help_text="Optional: stop after this many tokens.",
    )
    budget_cost_usd = cost_limit_field(
        decimal_places=6,
        label="Cost budget (USD)",
        help_text="Optional: stop once the run has cost this much.",
    )
    max_turns = forms.IntegerField(
        min_value=1, max_value=200, initial=20, label="Turn limit", help_text="Most model calls."
    )
    max_continuations = forms.IntegerField(
        min_value=0,
        max_value=10,
        initial=0,
        label="Continuations",
        help_text="How often to continue when the model hits its output limit (0: fail).",
    )

    rubric = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="No grading",
        help_text="Optional: a grader scores the output against this rubric and the agent "
        "revises until it passes or the rubric's iteration cap is reached.",
    )

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        from agentops.outcomes.models import Rubric

        self.fields["rubric"].queryset = Rubric.objects.gradable(team)

    def clean_input(self):
        text = self.cleaned_data["input"].strip()
        if not text:
            raise forms.ValidationError("Give the run some input.")
        return text


class RunFilterForm(FilterForm):
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.none(), required=False, empty_label="Any agent"
    )
    status = forms.ChoiceField(choices=[("", "Any status"), *RunStatus.choices], required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    q = forms.CharField(required=False, label="Text", help_text="In input, output or error.")

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = Agent.objects.filter(team=team)

    def filter(self, queryset):
        data = self.filter_values()
        if data["agent"]:
            queryset = queryset.filter(agent=data["agent"])
        if data["status"]:
            queryset = queryset.filter(status=data["status"])
        if data["since"]:
            queryset = queryset.filter(created_at__date__gte=data["since"])
        if data["until"]:
            queryset = queryset.filter(created_at__date__lte=data["until"])
        if data["q"]:
            queryset = queryset.filter(
                Q(input__icontains=data["q"])
                | Q(output__icontains=data["q"])
                | Q(error__icontains=data["q"])
            )
        return queryset


class RerunForm(forms.Form):
    version = forms.ChoiceField(
        choices=[("same", "Same version"), ("latest", "Latest version")], initial="same"
    )


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    message = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional: passed back to the model with the result.",
    )


class CompareForm(forms.Form):
    a = forms.IntegerField(min_value=1, label="Run")
    b = forms.IntegerField(min_value=1, label="with run")

    def clean(self):
        data = super().clean()
        if data.get("a") is not None and data.get("a") == data.get("b"):
            self.add_error("b", "Choose a different run to compare with.")
        return data


class TeamBudgetForm(forms.Form):
    monthly_tokens = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        label="Monthly tokens",
        help_text="Input and output tokens of all the team's model calls this month. "
        "Empty: no token limit.",
    )
    monthly_cost_usd = cost_limit_field(
        decimal_places=2,
        label="Monthly cost (USD)",
        help_text="What the team's model calls may cost this month. Empty: no cost limit.",
    )
