from django import forms

from agentops.filtering import FilterForm

from .catalogue import model_choices
from .models import MAX_ITPM, MAX_OTPM, MAX_RPM, ModelCallRecord, RateLimit


class ApiKeyForm(forms.Form):
    api_key = forms.CharField(
        label="Anthropic API key",
        max_length=300,
        # render_value=False: a submitted key is never echoed back into the page.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted; afterwards only its last 4 characters are shown.",
    )

    def clean_api_key(self):
        key = self.cleaned_data["api_key"].strip()
        if len(key) < 20 or any(c.isspace() for c in key):
            # Say what is wrong without repeating the value.
            raise forms.ValidationError("That does not look like an API key.")
        return key


class RateLimitForm(forms.ModelForm):
    model = forms.ChoiceField(
        required=False, help_text="Leave as “every other model” for a team-wide default."
    )

    class Meta:
        model = RateLimit
        fields = ["model", "rpm", "itpm", "otpm"]
        help_texts = {
            "rpm": f"1 to {MAX_RPM:,}.",
            "itpm": f"1 to {MAX_ITPM:,}.",
            "otpm": f"1 to {MAX_OTPM:,}.",
        }

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.team = team
        choices = [("", "every other model")] + model_choices(team)
        current = self.instance.model if self.instance.pk else None
        if current and current not in dict(choices):
            choices.append((current, current))
        self.fields["model"].choices = choices
        for name, top in (("rpm", MAX_RPM), ("itpm", MAX_ITPM), ("otpm", MAX_OTPM)):
            self.fields[name].widget.attrs.update({"min": 1, "max": top})

    def clean(self):
        data = super().clean()
        model = data.get("model", "")
        clash = RateLimit.objects.filter(team=self.team, model=model or "")
        if self.instance.pk:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            self.add_error("model", "This model already has a limit; edit that one.")
        return data

    def _post_clean(self):
        # The team is not a form field; set it before the model's own validation runs.
        self.instance.team = self.team
        super()._post_clean()


class UsageFilterForm(FilterForm):
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    model = forms.ChoiceField(required=False)
    agent = forms.ChoiceField(required=False)

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        calls = ModelCallRecord.objects.filter(team=team)
        models = calls.order_by("model").values_list("model", flat=True).distinct()
        self.fields["model"].choices = [("", "Any model")] + [(m, m) for m in models]
        agents = (
            calls.exclude(agent=None)
            .order_by("agent__name")
            .values_list("agent_id", "agent__name")
            .distinct()
        )
        self.fields["agent"].choices = [("", "Any agent")] + [(str(i), n) for i, n in agents]
