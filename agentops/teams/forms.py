from django import forms
from django.contrib.auth import get_user_model

from agentops.filtering import FilterForm

from .models import AuditEvent, Role


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="An existing user's username.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username__iexact=username).first()
        if user is None:
            raise forms.ValidationError(f"There is no user named {username!r}.")
        return user


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class TeamSettingsForm(forms.Form):
    name = forms.CharField(max_length=120)


class AuditFilterForm(FilterForm):
    q = forms.CharField(required=False, label="Object")
    verb = forms.ChoiceField(required=False)
    actor = forms.CharField(required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        verbs = (
            AuditEvent.objects.filter(team=team)
            .order_by("verb")
            .values_list("verb", flat=True)
            .distinct()
        )
        self.fields["verb"].choices = [("", "Any action")] + [(v, v) for v in verbs]

    def filter(self, queryset):
        data = self.filter_values()
        if data["q"]:
            queryset = queryset.filter(object_repr__icontains=data["q"])
        if data["verb"]:
            queryset = queryset.filter(verb=data["verb"])
        if data["actor"]:
            queryset = queryset.filter(actor__username__icontains=data["actor"])
        if data["since"]:
            queryset = queryset.filter(created_at__date__gte=data["since"])
        if data["until"]:
            queryset = queryset.filter(created_at__date__lte=data["until"])
        return queryset
