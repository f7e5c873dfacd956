from django import forms

from agentops.filtering import FilterForm
from agentops.llm.catalogue import model_choices

from .models import Criterion, GoldenExample, RubricVersion
from .services import criterion_key


class RubricForm(forms.ModelForm):
    """The versioned settings of a rubric. Saving never edits a version: it adds one."""

    class Meta:
        model = RubricVersion
        fields = [
            "name",
            "description",
            "pass_threshold",
            "max_iterations",
            "grader_model",
            "grader_instructions",
            "min_kappa",
        ]
        labels = {"min_kappa": "Minimum kappa", "max_iterations": "Max iterations"}
        widgets = {
            "description": forms.Textarea(attrs={"rows": 3}),
            "grader_instructions": forms.Textarea(attrs={"rows": 4}),
            "pass_threshold": forms.NumberInput(attrs={"step": "0.01", "min": "0", "max": "1"}),
            "min_kappa": forms.NumberInput(attrs={"step": "0.01", "min": "0", "max": "1"}),
        }

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["grader_model"] = forms.ChoiceField(
            choices=model_choices(team),
            initial=RubricVersion._meta.get_field("grader_model").default,
            label="Grader model",
            help_text="The Claude model that grades, in a fresh context of its own.",
        )

    def version_values(self):
        return {field: self.cleaned_data[field] for field in self.Meta.fields}


class CriterionForm(forms.ModelForm):
    class Meta:
        model = Criterion
        fields = ["name", "guidance", "weight", "scale_max", "minimum"]
        widgets = {
            "guidance": forms.Textarea(attrs={"rows": 2}),
            "weight": forms.NumberInput(attrs={"step": "0.5"}),
        }


class GoldenExampleForm(forms.ModelForm):
    class Meta:
        model = GoldenExample
        fields = ["output", "expected_verdict", "note"]
        widgets = {"output": forms.Textarea(attrs={"rows": 3})}


def _kept_rows(formset):
    """The rows a valid formset keeps: filled in and not marked for deletion."""
    return [
        {k: v for k, v in form.cleaned_data.items() if k != "DELETE"}
        for form in formset.forms
        if form.cleaned_data and not form.cleaned_data.get("DELETE")
    ]


class BaseCriterionFormSet(forms.BaseFormSet):
    def clean(self):
        if any(self.errors):
            return
        seen = {}
        kept = 0
        for form in self.forms:
            if not form.cleaned_data or form.cleaned_data.get("DELETE"):
                continue
            kept += 1
            key = criterion_key(form.cleaned_data["name"])
            if key in seen:
                form.add_error("name", f"Another criterion is already called {seen[key]!r}.")
            else:
                seen[key] = form.cleaned_data["name"]
        if not kept:
            raise forms.ValidationError("A rubric needs at least one criterion.")

    def rows(self):
        return _kept_rows(self)


class BaseGoldenFormSet(forms.BaseFormSet):
    def rows(self):
        return _kept_rows(self)


CriterionFormSet = forms.formset_factory(
    CriterionForm, formset=BaseCriterionFormSet, extra=1, can_delete=True, max_num=50
)
GoldenExampleFormSet = forms.formset_factory(
    GoldenExampleForm, formset=BaseGoldenFormSet, extra=1, can_delete=True, max_num=50
)


def rubric_forms(data=None, version=None, *, team):
    """The rubric form and its two formsets, filled from `version` when editing."""
    initial, criteria, golden = None, None, None
    if version is not None:
        initial = {field: getattr(version, field) for field in RubricForm.Meta.fields}
        criteria = [
            {field: getattr(c, field) for field in CriterionForm.Meta.fields}
            for c in version.criteria.all()
        ]
        golden = [
            {field: getattr(g, field) for field in GoldenExampleForm.Meta.fields}
            for g in version.golden_examples.all()
        ]
    return (
        RubricForm(data, initial=initial, team=team),
        CriterionFormSet(data, initial=criteria, prefix="criteria"),
        GoldenExampleFormSet(data, initial=golden, prefix="golden"),
    )


STATUS_CHOICES = [("", "Active"), ("archived", "Archived"), ("all", "All")]


class RubricFilterForm(FilterForm):
    q = forms.CharField(required=False, label="Name")
    status = forms.ChoiceField(required=False, choices=STATUS_CHOICES)

    def filter(self, queryset):
        data = self.filter_values()
        if data["q"]:
            queryset = queryset.filter(name__icontains=data["q"])
        if data["status"] == "archived":
            queryset = queryset.filter(archived_at__isnull=False)
        elif data["status"] != "all":
            queryset = queryset.filter(archived_at__isnull=True)
        return queryset
