from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q

from agentops.agents.models import Agent
from agentops.filtering import FilterForm
from agentops.outcomes.models import (
    GRADE_VERDICT_CHOICES,
    EvaluationStatus,
    Rubric,
    Verdict,
)
from agentops.teams.models import Membership, Role


def team_reviewers(team):
    """Users of the team who may review (reviewer role or higher), by username."""
    return (
        get_user_model()
        .objects.filter(
            memberships__in=Membership.objects.filter(team=team).exclude(role=Role.VIEWER)
        )
        .order_by("username")
    )


class QueueFilterForm(FilterForm):
    rubric = forms.ModelChoiceField(queryset=Rubric.objects.none(), required=False)
    agent = forms.ModelChoiceField(queryset=Agent.objects.none(), required=False)
    verdict = forms.ChoiceField(required=False, choices=[("", "Any verdict"), *Verdict.choices])
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *EvaluationStatus.choices]
    )
    reviewed = forms.ChoiceField(
        required=False,
        choices=[("", "Reviewed or not"), ("no", "Not reviewed"), ("yes", "Reviewed")],
    )
    agreement = forms.ChoiceField(
        required=False,
        label="Grader vs human",
        choices=[("", "Any"), ("disagree", "Disagree"), ("agree", "Agree")],
    )
    assigned = forms.ChoiceField(required=False, label="Assigned to")

    def __init__(self, *args, team, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["rubric"].queryset = Rubric.objects.filter(team=team)
        self.fields["rubric"].empty_label = "Any rubric"
        self.fields["agent"].queryset = Agent.objects.filter(team=team)
        self.fields["agent"].empty_label = "Any agent"
        self.fields["assigned"].choices = [
            ("", "Anyone or no one"),
            ("me", "Me"),
            ("none", "No one"),
        ] + [(u.username, u.username) for u in team_reviewers(team)]

    def filter(self, queryset):
        data = self.filter_values()
        if data["rubric"]:
            queryset = queryset.filter(rubric_version__rubric=data["rubric"])
        if data["agent"]:
            queryset = queryset.filter(agent=data["agent"])
        if data["verdict"]:
            queryset = queryset.filter(verdict=data["verdict"])
        if data["status"]:
            queryset = queryset.filter(status=data["status"])
        if data["reviewed"] == "yes":
            queryset = queryset.filter(review_count__gt=0)
        elif data["reviewed"] == "no":
            queryset = queryset.filter(review_count=0)
        if data["agreement"] == "disagree":
            queryset = queryset.filter(human_agreed=False)
        elif data["agreement"] == "agree":
            queryset = queryset.filter(human_agreed=True)
        if data["assigned"] == "me":
            queryset = queryset.filter(assigned_to=self.user)
        elif data["assigned"] == "none":
            queryset = queryset.filter(assigned_to__isnull=True)
        elif data["assigned"]:
            queryset = queryset.filter(assigned_to__username=data["assigned"])
        return queryset


def neighbours(queryset, evaluation):
    """The evaluations before and after this one in the queue's order (newest first)."""
    newer = Q(created_at__gt=evaluation.created_at) | Q(
        created_at=evaluation.created_at, id__gt=evaluation.id
    )
    older = Q(created_at__lt=evaluation.created_at) | Q(
        created_at=evaluation.created_at, id__lt=evaluation.id
    )
    previous = queryset.filter(newer).order_by("created_at", "id").first()
    following = queryset.filter(older).order_by("-created_at", "-id").first()
    return previous, following


class ReviewForm(forms.Form):
    """Agree with the grader, or give a verdict and per-criterion scores of one's own."""

    decision = forms.ChoiceField(choices=[("agree", "Agree"), ("override", "Override")])
    verdict = forms.ChoiceField(choices=GRADE_VERDICT_CHOICES, required=False)
    note = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=4000
    )

    def __init__(self, *args, evaluation, grader_scores, latest_review=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.evaluation = evaluation
        self.grader_scores = grader_scores
        # A reviewer who comes back starts from the latest review, not the grader's.
        overridden = (
            {o.criterion.key: o.score for o in latest_review.overrides.all()}
            if latest_review
            else {}
        )
        self.fields["verdict"].initial = (
            latest_review.verdict if latest_review else evaluation.verdict
        )
        for key, score in grader_scores.items():
            criterion = score.criterion
            self.fields[f"score_{key}"] = forms.IntegerField(
                label=criterion.name,
                min_value=0,
                max_value=criterion.scale_max,
                required=False,
                initial=overridden.get(key, score.score),
                help_text=f"{criterion.scale_label}; the grader gave {score.score}",
            )
        # The "o" shortcut focuses the first thing a reviewer would change.
        first = next(iter(grader_scores), None)
        target = self.fields[f"score_{first}"] if first else self.fields["verdict"]
        target.widget.attrs["data-shortcut-override"] = "true"

    def score_fields(self):
        return [self[f"score_{key}"] for key in self.grader_scores]

    def review_values(self):
        data = self.cleaned_data
        if data["decision"] == "agree":
            return {"verdict": None, "scores": None, "note": data["note"]}
        scores = {
            key: data[f"score_{key}"]
            for key in self.grader_scores
            if data.get(f"score_{key}") is not None
        }
        return {"verdict": data["verdict"] or None, "scores": scores, "note": data["note"]}


class AssignForm(forms.Form):
    assignee = forms.ChoiceField(required=False, label="Assign to")

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.reviewers = {u.username: u for u in team_reviewers(team)}
        self.fields["assignee"].choices = [("", "No one")] + [(n, n) for n in self.reviewers]

    def chosen_user(self):
        return self.reviewers.get(self.cleaned_data["assignee"])
