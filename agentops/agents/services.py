from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from agentops.llm.crypto import encrypt
from agentops.teams.services import audit_record, ensure_unique_name, unique_slug

from .models import (
    VERSIONED_FIELDS,
    Agent,
    AgentVersion,
    HostAllowlistEntry,
    ToolPermission,
    WebhookTool,
)


def _normalized(values):
    """The versioned fields in the form a comparison between saves can trust."""
    tools = [
        {"name": entry["name"], "permission": str(entry["permission"])}
        for entry in values.get("tools") or []
    ]
    bad = [t["name"] for t in tools if t["permission"] not in ToolPermission.values]
    if bad:
        raise ValidationError({"tools": f"Choose allow or ask as the permission of {bad[0]}."})
    names = [t["name"] for t in tools]
    if len(set(names)) != len(names):
        raise ValidationError({"tools": "Each tool can be enabled once."})
    temperature = values.get("temperature")
    return {
        "name": values["name"].strip(),
        "description": (values.get("description") or "").strip(),
        "model": values["model"],
        "system_prompt": values["system_prompt"],
        "max_tokens": int(values["max_tokens"]),
        "temperature": float(temperature) if temperature is not None else None,
        "thinking_budget": values.get("thinking_budget") or None,
        "tools": sorted(tools, key=lambda entry: entry["name"]),
    }


def _new_version(agent, actor, values):
    number = (agent.versions.aggregate(top=Max("number"))["top"] or 0) + 1
    return AgentVersion.objects.create(agent=agent, number=number, created_by=actor, **values)


@transaction.atomic
def agent_create(
    *,
    team,
    actor,
    name,
    model,
    system_prompt,
    max_tokens,
    description="",
    temperature=None,
    thinking_budget=None,
    tools=(),
):
    """A new agent with its first version."""
    values = _normalized(
        {
            "name": name,
            "description": description,
            "model": model,
            "system_prompt": system_prompt,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "thinking_budget": thinking_budget,
            "tools": list(tools),
        }
    )
    ensure_unique_name(Agent, team, values["name"], noun="an agent")
    agent = Agent.objects.create(
        team=team,
        name=values["name"],
        slug=unique_slug(Agent, team, values["name"], fallback="agent"),
        description=values["description"],
        created_by=actor,
    )
    version = _new_version(agent, actor, values)
    agent.current_version = version
    agent.save(update_fields=["current_version", "updated_at"])
    audit_record(
        team=team,
        actor=actor,
        verb="agent.create",
        obj=agent,
        after={"version": version.number, **values},
    )
    return agent


@transaction.atomic
def agent_update(
    *,
    agent,
    actor,
    name,
    model,
    system_prompt,
    max_tokens,
    description="",
    temperature=None,
    thinking_budget=None,
    tools=(),
):
    """Save a new version if anything changed; the new AgentVersion, or None if nothing did."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    if agent.is_archived:
        raise ValidationError("An archived agent cannot be edited; unarchive it first.")
    values = _normalized(
        {
            "name": name,
            "description": description,
            "model": model,
            "system_prompt": system_prompt,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "thinking_budget": thinking_budget,
            "tools": list(tools),
        }
    )
    ensure_unique_name(Agent, agent.team, values["name"], noun="an agent", exclude_pk=agent.pk)
    current = agent.current_version
    before = _normalized(current.snapshot()) if current else {}
    if before == values:
        return None
    version = _new_version(agent, actor, values)
    agent.name = values["name"]
    agent.description = values["description"]
    agent.current_version = version
    agent.save(update_fields=["name", "description", "current_version", "updated_at"])
    changed = [field for field in VERSIONED_FIELDS if before.get(field) != values[field]]
    audit_record(
        team=agent.team,
        actor=actor,
        verb="agent.update",
        obj=agent,
        before={"version": current.number if current else None}
        | {f: before.get(f) for f in changed},
        after={"version": version.number} | {f: values[f] for f in changed},
    )
    return version


@transaction.atomic
def agent_archive(*, agent, actor):
    """Archive instead of delete: runs pin the agent's versions, so agents are never removed."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    if agent.is_archived:
        return agent
    agent.archived_at = timezone.now()
    agent.save(update_fields=["archived_at", "updated_at"])
    audit_record(team=agent.team, actor=actor, verb="agent.archive", obj=agent)
    return agent


@transaction.atomic
def agent_unarchive(*, agent, actor):
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    if not agent.is_archived:
        return agent
    agent.archived_at = None
    agent.save(update_fields=["archived_at", "updated_at"])
    audit_record(team=agent.team, actor=actor, verb="agent.unarchive", obj=agent)
    return agent


# --- webhook tools and the host allowlist -------------------------------------------------


def agents_using_tool(team, tool_name):
    """Agents whose current version enables `tool_name` (checked in Python: SQLite too)."""
    agents = Agent.objects.filter(team=team).select_related("current_version")
    return [
        agent
        for agent in agents
        if agent.current_version and agent.current_version.permission_for(tool_name)
    ]


def _webhook_audit_values(tool):
    return {
        "name": tool.name,
        "description": tool.description,
        "url": tool.url,
        "timeout_s": tool.timeout_s,
        "input_schema": tool.input_schema,
    }


@transaction.atomic
def webhook_tool_create(
    *,
    team,
    actor,
    name,
    description,
    input_schema,
    url,
    secret,
    timeout_s=10,
    also_allow_host=None,
):
    """A team's webhook tool; `also_allow_host` (an admin's choice in the form) adds its
    host to the allowlist in the same transaction."""
    if WebhookTool.objects.filter(team=team, name=name).exists():
        raise ValidationError({"name": f"This team already has a tool named {name!r}."})
    if also_allow_host:
        allowlist_entry_add(team=team, actor=actor, host=also_allow_host, note=f"tool {name}")
    tool = WebhookTool.objects.create(
        team=team,
        name=name,
        description=description,
        input_schema=input_schema,
        url=url,
        secret_encrypted=encrypt(secret),
        timeout_s=timeout_s,
        created_by=actor,
    )
    audit_record(
        team=team,
        actor=actor,
        verb="webhook_tool.create",
        obj=tool,
        after=_webhook_audit_values(tool),
    )
    return tool


@transaction.atomic
def webhook_tool_update(
    *,
    tool,
    actor,
    name,
    description,
    input_schema,
    url,
    timeout_s,
    secret="",
    also_allow_host=None,
):
    """Change a webhook tool; an empty `secret` keeps the stored one. `also_allow_host`
    as for webhook_tool_create."""
    tool = WebhookTool.objects.select_for_update().get(pk=tool.pk)
    if also_allow_host:
        allowlist_entry_add(team=tool.team, actor=actor, host=also_allow_host, note=f"tool {name}")
    if name != tool.name:
        if WebhookTool.objects.filter(team=tool.team, name=name).exclude(pk=tool.pk).exists():
            raise ValidationError({"name": f"This team already has a tool named {name!r}."})
        users = agents_using_tool(tool.team, tool.name)
        if users:
            raise ValidationError(
                {
                    "name": "Renaming would break agents that use this tool: "
                    + ", ".join(agent.name for agent in users)
                    + ". Remove it from them first."
                }
            )
    before = _webhook_audit_values(tool)
    tool.name = name
    tool.description = description
    tool.input_schema = input_schema
    tool.url = url
    tool.timeout_s = timeout_s
    if secret:
        tool.secret_encrypted = encrypt(secret)
    tool.save()
    after = _webhook_audit_values(tool)
    if secret:
        after["secret"] = "changed"
    audit_record(
        team=tool.team,
        actor=actor,
        verb="webhook_tool.update",
        obj=tool,
        before={k: v for k, v in before.items() if after.get(k) != v},
        after={k: v for k, v in after.items() if before.get(k) != v},
    )
    return tool


@transaction.atomic
def webhook_tool_delete(*, tool, actor):
    users = agents_using_tool(tool.team, tool.name)
    if users:
        raise ValidationError(
            "This tool is used by "
            + ", ".join(agent.name for agent in users)
            + "; remove it from those agents first."
        )
    audit_record(
        team=tool.team,
        actor=actor,
        verb="webhook_tool.delete",
        obj=tool,
        before=_webhook_audit_values(tool),
    )
    tool.delete()


@transaction.atomic
def allowlist_entry_add(*, team, actor, host, allow_private=False, note=""):
    if HostAllowlistEntry.objects.filter(team=team, host=host).exists():
        raise ValidationError({"host": f"{host} is already on the allowlist."})
    entry = HostAllowlistEntry.objects.create(
        team=team, host=host, allow_private=allow_private, note=note, created_by=actor
    )
    audit_record(
        team=team,
        actor=actor,
        verb="allowlist.add",
        obj=entry,
        after={"host": host, "allow_private": allow_private, "note": note},
    )
    return entry


@transaction.atomic
def allowlist_entry_remove(*, entry, actor):
    audit_record(
        team=entry.team,
        actor=actor,
        verb="allowlist.remove",
        obj=entry,
        before={"host": entry.host, "allow_private": entry.allow_private},
    )
    entry.delete()
