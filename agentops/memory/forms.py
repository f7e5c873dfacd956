from django import forms

from agentops.agents.models import Agent
from agentops.llm.catalogue import model_choices
from agentops.outcomes.models import Verdict

from .models import AttachmentMode, MemoryStatus, MemoryStore, StoreAttachment


class StoreForm(forms.ModelForm):
    dream_model = forms.ChoiceField(label="Model for scheduled dreams")

    class Meta:
        model = MemoryStore
        fields = [
            "name",
            "description",
            "instructions",
            "auto_apply",
            "dream_every_hours",
            "dream_model",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 3}),
            "instructions": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        choices = model_choices(team)
        current = self.instance.dream_model if self.instance.pk else ""
        if current and current not in dict(choices):
            choices = [(current, current), *choices]
        self.fields["dream_model"].choices = choices
        if not self.instance.pk:
            self.initial.setdefault("dream_model", choices[0][0])
        self.fields["dream_every_hours"].min_value = 1
        self.fields["dream_every_hours"].widget.attrs["min"] = 1

    def clean_dream_every_hours(self):
        value = self.cleaned_data["dream_every_hours"]
        if value is not None and value < 1:
            raise forms.ValidationError("Dream at most once an hour, or leave it empty.")
        return value

    def values(self):
        return {name: self.cleaned_data[name] for name in self.Meta.fields}


class MemoryForm(forms.Form):
    title = forms.CharField(max_length=200)
    content = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), help_text="Markdown.")
    tags = forms.CharField(required=False, help_text="Comma-separated, e.g. refunds, policy.")

    def clean_content(self):
        content = self.cleaned_data["content"].strip()
        if not content:
            raise forms.ValidationError("Write the memory's content.")
        return content


class MemoryFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Search")
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *MemoryStatus.choices], initial=""
    )
    tag = forms.ChoiceField(required=False, label="Tag")

    def __init__(self, *args, tags=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tag"].choices = [("", "Any tag"), *((tag, tag) for tag in tags)]


class AttachmentForm(forms.ModelForm):
    class Meta:
        model = StoreAttachment
        fields = ["agent", "mode", "token_budget", "holdout_share"]

    def __init__(self, *args, store, **kwargs):
        super().__init__(*args, **kwargs)
        attached = store.attachments.values_list("agent_id", flat=True)
        self.fields["agent"].queryset = Agent.objects.filter(
            team=store.team, archived_at__isnull=True
        ).exclude(pk__in=attached)
        self.fields["mode"].choices = AttachmentMode.choices
        _limit_numbers(self)


class AttachmentEditForm(forms.ModelForm):
    class Meta:
        model = StoreAttachment
        fields = ["mode", "token_budget", "holdout_share"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _limit_numbers(self)


def _limit_numbers(form):
    form.fields["token_budget"].min_value = 1
    form.fields["token_budget"].widget.attrs["min"] = 1
    holdout = form.fields["holdout_share"]
    holdout.widget.attrs.update({"min": 0, "max": 0.9, "step": 0.05})
    holdout.validators.append(_holdout_range)
    form.fields["token_budget"].validators.append(_positive)


def _positive(value):
    if value is not None and value < 1:
        raise forms.ValidationError("The token budget must be at least 1.")


def _holdout_range(value):
    if value is not None and not 0 <= value <= 0.9:
        raise forms.ValidationError("The holdout share must be between 0 and 0.9.")


class DreamForm(forms.Form):
    agents = forms.ModelMultipleChoiceField(
        queryset=Agent.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every agent attached to the store.",
    )
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    verdict = forms.ChoiceField(
        required=False,
        choices=[("", "Any session"), *Verdict.choices],
        help_text="Only graded sessions with this verdict.",
    )
    instructions = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="Optional focus."
    )
    model = forms.ChoiceField()

    def __init__(self, *args, store, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agents"].queryset = Agent.objects.filter(team=store.team).order_by("name")
        choices = model_choices(store.team)
        if store.dream_model not in dict(choices):
            choices = [(store.dream_model, store.dream_model), *choices]
        self.fields["model"].choices = choices
        self.initial.setdefault("model", store.dream_model)

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The end date is before the start date.")
        return data


class RollbackForm(forms.Form):
    to_version = forms.TypedChoiceField(coerce=int, label="Return to")

    def __init__(self, *args, states, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [
            (
                version.pk,
                f"{version.created_at:%Y-%m-%d %H:%M:%S} · {version.get_operation_display()} "
                f"“{version.title}” by {version.actor_name} · {active} active",
            )
            for version, active in states
        ]
        self.fields["to_version"].choices = [*choices, (0, "The empty store (retire every memory)")]
