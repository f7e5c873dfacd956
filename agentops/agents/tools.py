"""The tools agents call: a registry of built-ins, the team's webhook tools, and one entry
point, `execute_tool`, that validates the model's input and never raises for a tool's
failure (it becomes an `is_error` tool result and the run goes on).

The run engine uses:
- `tools_for_version(version)` for the Messages API `tools` parameter;
- `tool_permission(version, name)` to know whether a call waits for a person's approval;
- `execute_tool(team=..., version=..., name=..., input=..., step_id=...)` to run a call.

Later parts add built-ins with `register(ToolSpec(...))` (e.g. delegate, memory_search).
"""

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .crypto import SecretUnreadable, decrypt_secret
from .models import ToolPermission, WebhookTool
from .netguard import Refused, RequestFailed, guarded_request

logger = logging.getLogger(__name__)

# The Messages API accepts tool names matching this pattern.
TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Built-ins later issues add; a team's webhook tool may not take these names meanwhile.
RESERVED_TOOL_NAMES = {"delegate", "memory_search"}
# A tool result longer than this is cut, so one call cannot flood the context window.
MAX_RESULT_CHARS = 100_000


@dataclass(frozen=True)
class ToolOutcome:
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class ToolCallContext:
    team: object
    version: object = None
    step_id: int | None = None


class ToolFailure(Exception):
    """Raised inside a tool's run(): its message is the is_error result the model sees."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict
    run: Callable[[ToolCallContext, dict], ToolOutcome] = field(repr=False)
    builtin: bool = True

    @property
    def schema_json(self):
        return json.dumps(self.input_schema, indent=2)

    def as_tool_param(self):
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }


def schema_errors(schema):
    """Why `schema` is not a usable tool input schema (JSON Schema 2020-12), or []."""
    if not isinstance(schema, dict):
        return ["The schema must be a JSON object."]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        path = "/".join(str(p) for p in error.path)
        return [f"Not a valid JSON Schema{f' at {path}' if path else ''}: {error.message}"]
    if schema.get("type") != "object":
        return ['A tool input schema must have "type": "object".']
    return []


class ToolRegistry:
    def __init__(self):
        self._specs = {}

    def register(self, spec):
        if not TOOL_NAME_PATTERN.match(spec.name):
            raise ValueError(f"invalid tool name {spec.name!r}")
        if spec.name in self._specs:
            raise ValueError(f"a tool named {spec.name!r} is already registered")
        problems = schema_errors(spec.input_schema)
        if problems:
            raise ValueError(f"tool {spec.name!r}: {problems[0]}")
        self._specs[spec.name] = spec
        return spec

    def get(self, name):
        return self._specs.get(name)

    def names(self):
        return set(self._specs)

    def all(self):
        return sorted(self._specs.values(), key=lambda spec: spec.name)


registry = ToolRegistry()
register = registry.register


def reserved_names():
    """Names a webhook tool may not use: the built-ins and those announced for later."""
    return registry.names() | RESERVED_TOOL_NAMES


# --- http_fetch -------------------------------------------------------------------------


def _http_fetch(context, tool_input):
    try:
        response = guarded_request(context.team, tool_input["url"], method="GET")
    except Refused as error:
        raise ToolFailure(f"http_fetch refused: {error}.") from error
    except RequestFailed as error:
        raise ToolFailure(f"http_fetch failed: {error}.") from error
    content_type = response.content_type or "unknown"
    header = f"URL: {response.url}\nStatus: {response.status}\nContent-Type: {content_type}\n"
    main_type = content_type.split(";")[0].strip().lower()
    textual = (
        not main_type
        or main_type == "unknown"
        or main_type.startswith("text/")
        or main_type.endswith(("json", "xml", "javascript"))
        or main_type.endswith(("+json", "+xml"))
    )
    if textual:
        body = response.text()
    else:
        body = f"[{len(response.body)} bytes of {main_type} not shown: not text]"
    if response.truncated:
        limit = settings.AGENTOPS_TOOL_MAX_RESPONSE_BYTES
        body += f"\n[truncated: the response is larger than {limit} bytes]"
    return ToolOutcome(content=f"{header}\n{body}", is_error=response.status >= 400)


register(
    ToolSpec(
        name="http_fetch",
        description=(
            "Fetch a web page or API response with an HTTP GET. Only hosts on the team's "
            "allowlist can be reached. Returns the status, the content type and the body "
            "as text (large bodies are truncated)."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "url": {
                    "type": "string",
                    "description": "The absolute http(s) URL to fetch.",
                    "maxLength": 2000,
                }
            },
            "required": ["url"],
            "additionalProperties": False,
        },
        run=_http_fetch,
    )
)


# --- webhook tools ----------------------------------------------------------------------


def webhook_signature(secret, timestamp, body):
    """`sha256=<hex>`: HMAC-SHA256 of b"<timestamp>." + body with the tool's secret.

    The timestamp is signed with the body so a captured request cannot be replayed later
    with a fresh timestamp; receivers should also reject old timestamps.
    """
    message = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _run_webhook(tool_id):
    def run(context, tool_input):
        tool = WebhookTool.objects.filter(pk=tool_id, team=context.team).first()
        if tool is None:
            raise ToolFailure("this webhook tool no longer exists.")
        try:
            secret = decrypt_secret(tool.secret_encrypted)
        except SecretUnreadable as error:
            raise ToolFailure(f"webhook tool {tool.name} is misconfigured: {error}.") from error
        body = json.dumps(tool_input, separators=(",", ":"), ensure_ascii=False).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Agentops-Tool": tool.name,
            "X-Agentops-Timestamp": timestamp,
            "X-Agentops-Signature": webhook_signature(secret, timestamp, body),
        }
        if context.step_id is not None:
            # The same step may be retried after a crash: receivers can de-duplicate on this.
            headers["X-Agentops-Step"] = str(context.step_id)
        try:
            response = guarded_request(
                context.team,
                tool.url,
                method="POST",
                content=body,
                headers=headers,
                timeout_s=tool.timeout_s,
                follow_redirects=False,
            )
        except Refused as error:
            raise ToolFailure(f"webhook tool {tool.name} refused: {error}.") from error
        except RequestFailed as error:
            raise ToolFailure(f"webhook tool {tool.name} failed: {error}.") from error
        if response.truncated:
            limit = settings.AGENTOPS_TOOL_MAX_RESPONSE_BYTES
            raise ToolFailure(
                f"webhook tool {tool.name} answered with more than {limit} bytes; "
                "the result was discarded."
            )
        text = response.text()
        if not 200 <= response.status < 300:
            raise ToolFailure(
                f"webhook tool {tool.name} answered HTTP {response.status}: {text[:2000]}"
            )
        return ToolOutcome(content=text)

    return run


def webhook_spec(tool):
    return ToolSpec(
        name=tool.name,
        description=tool.description,
        input_schema=tool.input_schema,
        run=_run_webhook(tool.pk),
        builtin=False,
    )


# --- what an agent version may call -----------------------------------------------------


def available_tools(team):
    """Every tool the team's agents can enable: built-ins, then the team's webhook tools."""
    builtins = registry.all()
    taken = {spec.name for spec in builtins}
    webhooks = [
        webhook_spec(tool)
        for tool in WebhookTool.objects.filter(team=team).order_by("name")
        if tool.name not in taken
    ]
    return builtins + webhooks


def resolve_tool(team, name):
    spec = registry.get(name)
    if spec is not None:
        return spec
    tool = WebhookTool.objects.filter(team=team, name=name).first()
    return webhook_spec(tool) if tool is not None else None


def tools_for_version(version) -> list[dict]:
    """The Messages API `tools` entries for the tools the version enables.

    A webhook tool deleted since the version was saved is left out.
    """
    team = version.agent.team
    params = []
    for entry in version.tools or []:
        spec = resolve_tool(team, entry.get("name", ""))
        if spec is not None:
            params.append(spec.as_tool_param())
    return params


def tool_permission(version, tool_name) -> str:
    """ "allow" or "ask" for a tool the version enables.

    A tool the version does not enable is "allow": there is nothing for a person to
    approve, and execute_tool answers such a call with an is_error result.
    """
    permission = version.permission_for(tool_name)
    if permission == ToolPermission.ASK:
        return ToolPermission.ASK.value
    return ToolPermission.ALLOW.value


def _input_errors(schema, tool_input):
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(tool_input), key=lambda e: list(e.path))
    messages = []
    for error in errors[:5]:
        path = "/".join(str(p) for p in error.path)
        messages.append(f"{path or '(input)'}: {error.message}")
    return messages


def _bounded(outcome):
    if len(outcome.content) <= MAX_RESULT_CHARS:
        return outcome
    cut = outcome.content[:MAX_RESULT_CHARS] + f"\n[truncated at {MAX_RESULT_CHARS} characters]"
    return ToolOutcome(content=cut, is_error=outcome.is_error)


def execute_tool(*, team, version, name, input, step_id=None) -> ToolOutcome:  # noqa: A002
    """Run one tool call of the model. Never raises for a tool's failure.

    `version` may be None for calls that no agent version governs; otherwise a tool the
    version does not enable is refused.
    """
    if version is not None and version.permission_for(name) is None:
        return ToolOutcome(f"The tool {name!r} is not enabled for this agent.", is_error=True)
    spec = resolve_tool(team, name)
    if spec is None:
        return ToolOutcome(f"There is no tool named {name!r}.", is_error=True)
    if not isinstance(input, dict):
        return ToolOutcome(f"Invalid input for {name}: the input must be an object.", True)
    try:
        problems = _input_errors(spec.input_schema, input)
    except SchemaError:
        return ToolOutcome(f"The tool {name} has an invalid input schema.", is_error=True)
    if problems:
        return ToolOutcome(f"Invalid input for {name}: " + "; ".join(problems), is_error=True)
    context = ToolCallContext(team=team, version=version, step_id=step_id)
    try:
        outcome = spec.run(context, input)
    except ToolFailure as failure:
        return ToolOutcome(str(failure), is_error=True)
    except Exception as error:
        logger.exception("tool %s failed (step %s)", name, step_id)
        return ToolOutcome(f"The tool {name} failed: {type(error).__name__}.", is_error=True)
    return _bounded(outcome)
