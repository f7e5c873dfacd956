import ipaddress
import json
import re
from urllib.parse import urlsplit

from django import forms
from django.db.models import Q

from agentops.filtering import FilterForm
from agentops.llm.catalogue import model_choices

from .models import HostAllowlistEntry, ToolPermission
from .netguard import Refused, matching_entry, normalize_host
from .tools import TOOL_NAME_PATTERN, available_tools, reserved_names, schema_errors

# The largest max_tokens any catalogue model accepts for one response.
MAX_TOKENS_LIMIT = 64_000
# The Messages API's smallest extended-thinking budget.
MIN_THINKING_BUDGET = 1024

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class AgentForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    model = forms.ChoiceField(
        error_messages={
            "invalid_choice": "Unknown model %(value)s: choose a model from the catalogue."
        }
    )
    system_prompt = forms.CharField(
        max_length=100_000,
        widget=forms.Textarea(attrs={"rows": 10}),
        error_messages={"required": "The system prompt cannot be empty."},
    )
    max_tokens = forms.IntegerField(
        min_value=1,
        max_value=MAX_TOKENS_LIMIT,
        initial=1024,
        help_text=f"The longest answer one model call may give, 1 to {MAX_TOKENS_LIMIT:,}.",
        error_messages={
            "min_value": f"Max tokens must be between 1 and {MAX_TOKENS_LIMIT:,}.",
            "max_value": f"Max tokens must be between 1 and {MAX_TOKENS_LIMIT:,}.",
        },
    )
    temperature = forms.FloatField(
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text="0 to 1; leave empty for the model's default.",
    )
    thinking_budget = forms.IntegerField(
        required=False,
        min_value=MIN_THINKING_BUDGET,
        label="Extended thinking budget",
        help_text=(
            f"Tokens the model may think before answering (at least {MIN_THINKING_BUDGET:,} "
            "and below max tokens); leave empty to turn extended thinking off."
        ),
    )

    config_field_names = [
        "name",
        "description",
        "model",
        "system_prompt",
        "max_tokens",
        "temperature",
        "thinking_budget",
    ]

    def __init__(self, *args, team, version=None, **kwargs):
        if version is not None and "initial" not in kwargs:
            kwargs["initial"] = _initial_from_version(version)
        super().__init__(*args, **kwargs)
        self.team = team
        choices = model_choices(team)
        # A version may name a model since dropped from the catalogue: show it rather than
        # let the browser silently pick another, and refuse it on save.
        self.retired_model = None
        if version is not None and version.model not in {value for value, _ in choices}:
            self.retired_model = version.model
            choices = [*choices, (version.model, f"{version.model} (not in the catalogue)")]
        self.fields["model"].choices = choices
        stored = version.tools if version else []
        enabled = {entry["name"]: entry["permission"] for entry in stored}
        self.tool_specs = available_tools(team)
        self.tool_names = [spec.name for spec in self.tool_specs]
        for spec in self.tool_specs:
            self.fields[f"tool_{spec.name}"] = forms.BooleanField(
                required=False, label=spec.name, initial=spec.name in enabled
            )
            self.fields[f"permission_{spec.name}"] = forms.ChoiceField(
                required=False,
                choices=ToolPermission.choices,
                initial=enabled.get(spec.name, ToolPermission.ASK),
                label=f"Permission for {spec.name}",
            )
        self.missing_tools = sorted(set(enabled) - set(self.tool_names))

    def config_fields(self):
        return [self[name] for name in self.config_field_names]

    def tool_rows(self):
        return [
            {
                "spec": spec,
                "enabled": self[f"tool_{spec.name}"],
                "permission": self[f"permission_{spec.name}"],
            }
            for spec in self.tool_specs
        ]

    def clean_model(self):
        model = self.cleaned_data["model"]
        if model == self.retired_model:
            raise forms.ValidationError(
                f"Unknown model {model}: choose a model from the catalogue."
            )
        return model

    def clean(self):
        data = super().clean()
        budget = data.get("thinking_budget")
        max_tokens = data.get("max_tokens")
        if budget is not None and max_tokens is not None and budget >= max_tokens:
            self.add_error("thinking_budget", "The thinking budget must be below max tokens.")
        if budget is not None and data.get("temperature") is not None:
            self.add_error(
                "temperature",
                "Extended thinking does not work with a custom temperature; leave it empty.",
            )
        return data

    def agent_values(self):
        """Keyword arguments for agent_create / agent_update."""
        data = self.cleaned_data
        tools = [
            {"name": name, "permission": data.get(f"permission_{name}") or ToolPermission.ASK}
            for name in self.tool_names
            if data.get(f"tool_{name}")
        ]
        return {
            "name": data["name"],
            "description": data["description"],
            "model": data["model"],
            "system_prompt": data["system_prompt"],
            "max_tokens": data["max_tokens"],
            "temperature": data["temperature"],
            "thinking_budget": data["thinking_budget"],
            "tools": tools,
        }


def _initial_from_version(version):
    return {
        "name": version.agent.name,
        "description": version.agent.description,
        "model": version.model,
        "system_prompt": version.system_prompt,
        "max_tokens": version.max_tokens,
        "temperature": version.temperature,
        "thinking_budget": version.thinking_budget,
    }


class AgentFilterForm(FilterForm):
    q = forms.CharField(required=False, label="Name or text")
    status = forms.ChoiceField(
        required=False,
        choices=[("", "Active"), ("archived", "Archived"), ("all", "All")],
    )

    def filter(self, queryset):
        data = self.filter_values()
        if data["q"]:
            queryset = queryset.filter(
                Q(name__icontains=data["q"])
                | Q(description__icontains=data["q"])
                | Q(current_version__system_prompt__icontains=data["q"])
            )
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


class WebhookToolForm(forms.Form):
    name = forms.CharField(
        max_length=64,
        help_text="What the model calls the tool: letters, digits, _ and - only.",
    )
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Tell the model what the tool does and when to use it.",
    )
    input_schema = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 10}),
        label="Input JSON Schema",
        initial=json.dumps(
            {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
            indent=2,
        ),
        help_text='A JSON Schema (2020-12) with "type": "object" for the tool input.',
    )
    url = forms.URLField(
        max_length=500,
        label="URL",
        assume_scheme="https",
        help_text="agentops POSTs the input here as JSON; its host must be on the allowlist.",
    )
    secret = forms.CharField(
        required=False,
        min_length=16,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="Signs each request (X-Agentops-Signature); at least 16 characters.",
    )
    timeout_s = forms.IntegerField(min_value=1, max_value=30, initial=10, label="Timeout (s)")
    # Offered to admins only: adding the URL's host to the allowlist from here keeps what
    # was typed in the form (the allowlist itself is under Tools).
    allow_host = forms.BooleanField(
        required=False, label="Also add this URL's host to the team's allowlist"
    )

    def __init__(self, *args, team, tool=None, may_allow_hosts=False, **kwargs):
        if tool is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": tool.name,
                "description": tool.description,
                "input_schema": json.dumps(tool.input_schema, indent=2),
                "url": tool.url,
                "timeout_s": tool.timeout_s,
            }
        super().__init__(*args, **kwargs)
        self.team = team
        self.tool = tool
        self.may_allow_hosts = may_allow_hosts
        self.host_to_allow = None
        if not may_allow_hosts:
            del self.fields["allow_host"]
        if tool is None:
            self.fields["secret"].required = True
        else:
            self.fields["secret"].help_text = "Leave empty to keep the current secret."

    def tool_values(self):
        """The tool's fields for the services (what allow_host asks for is host_to_allow)."""
        return {k: v for k, v in self.cleaned_data.items() if k != "allow_host"}

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not TOOL_NAME_PATTERN.match(name):
            raise forms.ValidationError("Use only letters, digits, _ and - (at most 64).")
        if name in reserved_names():
            raise forms.ValidationError(f"{name} is the name of a built-in tool.")
        return name

    def clean_input_schema(self):
        raw = self.cleaned_data["input_schema"]
        try:
            schema = json.loads(raw)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(
                f"This is not valid JSON: {error.msg} (line {error.lineno})."
            ) from None
        problems = schema_errors(schema)
        if problems:
            raise forms.ValidationError(problems)
        return schema

    def clean_url(self):
        url = self.cleaned_data["url"]
        parts = urlsplit(url)
        if parts.scheme.lower() not in {"http", "https"}:
            raise forms.ValidationError("Use an http or https URL.")
        if parts.username or parts.password:
            raise forms.ValidationError("Put no credentials in the URL; the secret signs calls.")
        try:
            host = normalize_host(parts.hostname)
        except Refused as error:
            raise forms.ValidationError(str(error)) from None
        entries = list(HostAllowlistEntry.objects.filter(team=self.team))
        if matching_entry(entries, host) is None:
            if self.may_allow_hosts and self.data.get("allow_host"):
                self.host_to_allow = host  # the view adds it with the tool
                return url
            how = (
                "tick \u201cAlso add this URL's host\u201d below to add it with this tool"
                if self.may_allow_hosts
                else "an admin adds it under Tools"
            )
            raise forms.ValidationError(f"The host {host} is not on the team's allowlist; {how}.")
        return url


class AllowlistEntryForm(forms.Form):
    host = forms.CharField(
        max_length=253,
        help_text="A host name (api.example.com), *.example.com for its subdomains, or an IP.",
    )
    allow_private = forms.BooleanField(
        required=False,
        label="Allow private addresses",
        help_text="Only for hosts inside your network: lets this host resolve to a private, "
        "loopback or link-local address.",
    )
    note = forms.CharField(max_length=200, required=False)

    def clean_host(self):
        raw = self.cleaned_data["host"].strip()
        if "://" in raw or "/" in raw:
            raise forms.ValidationError("Enter a host name like api.example.com, not a URL.")
        host = raw.lower().rstrip(".")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        name = host[2:] if host.startswith("*.") else host
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise forms.ValidationError("This is not a valid host name.") from None
        labels = name.split(".")
        if not all(_HOST_LABEL.match(label) for label in labels):
            raise forms.ValidationError("This is not a valid host name.")
        if host.startswith("*.") and len(labels) < 2:
            raise forms.ValidationError("A wildcard needs a domain: *.example.com.")
        return f"*.{name}" if host.startswith("*.") else name
