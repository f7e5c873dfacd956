"""Build tool input that is valid against a tool's JSON Schema, filled from the conversation.

The generator covers what tool schemas use in practice (types, required and optional
properties, enum/const/default/examples, formats, length and range bounds, arrays, $ref,
anyOf/oneOf/allOf); the result is always checked with jsonschema before it is sent.
"""

import uuid
from dataclasses import dataclass, field

from jsonschema.validators import validator_for

URL_NAMES = {"url", "uri", "link", "href", "urls", "links", "address"}
TEXT_NAMES = {
    "query",
    "q",
    "search",
    "question",
    "prompt",
    "topic",
    "term",
    "terms",
    "keywords",
    "text",
    "input",
    "message",
    "content",
    "task",
    "instructions",
}


@dataclass
class Hints:
    """What the conversation offers to fill a tool's input with."""

    text: str = ""
    url: str = ""
    urls: list = field(default_factory=list)
    keywords: list = field(default_factory=list)
    key: str = "sim"


def is_url_property(name: str, schema: dict) -> bool:
    if not isinstance(schema, dict):
        return False
    if schema.get("format") in ("uri", "url", "iri"):
        return True
    items = schema.get("items")
    if isinstance(items, dict) and items.get("format") in ("uri", "url", "iri"):
        return True
    return name.lower() in URL_NAMES


def schema_has_url_property(schema: dict) -> bool:
    properties = (schema or {}).get("properties") or {}
    return any(is_url_property(name, sub) for name, sub in properties.items())


def _resolve(schema, root):
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 20:
        ref = schema["$ref"]
        if not ref.startswith("#"):
            return {}
        target = root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part, {}) if isinstance(target, dict) else {}
        schema = target
        seen += 1
    return schema if isinstance(schema, dict) else {}


def _merge_all_of(schema, root):
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema.get("allOf", []):
        part = _resolve(part, root)
        for key, value in part.items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key == "required":
                merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
            else:
                merged.setdefault(key, value)
    return merged


def _type_of(schema) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind:
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _string(name: str, schema: dict, hints: Hints) -> str:
    fmt = schema.get("format")
    lowered = name.lower()
    if is_url_property(name, schema):
        value = hints.url or (hints.urls[0] if hints.urls else "https://example.com/")
    elif fmt == "email" or "email" in lowered:
        value = "user@example.com"
    elif fmt == "date":
        value = "2025-01-01"
    elif fmt == "date-time":
        value = "2025-01-01T00:00:00Z"
    elif fmt == "time":
        value = "12:00:00Z"
    elif fmt == "uuid" or lowered.endswith("uuid"):
        value = str(uuid.uuid5(uuid.NAMESPACE_URL, hints.key + name))
    elif lowered in TEXT_NAMES:
        value = hints.text[:200] or " ".join(hints.keywords) or name
    elif "path" in lowered or "file" in lowered:
        value = "notes.md"
    elif "name" in lowered or "title" in lowered:
        value = " ".join(word.capitalize() for word in hints.keywords[:3]) or "Example"
    else:
        value = " ".join(hints.keywords[:4]) or hints.text[:80] or name
    min_length = schema.get("minLength", 0)
    max_length = schema.get("maxLength")
    while len(value) < min_length:
        value += " " + (hints.keywords[0] if hints.keywords else "x")
    if max_length is not None:
        value = value[:max_length]
    return value


def _number(schema: dict, integer: bool):
    low = schema.get("minimum")
    exclusive_low = schema.get("exclusiveMinimum")
    high = schema.get("maximum")
    exclusive_high = schema.get("exclusiveMaximum")
    value = 1
    if low is not None:
        value = max(value, low)
    if exclusive_low is not None:
        value = max(value, exclusive_low + (1 if integer else 0.5))
    if high is not None:
        value = min(value, high)
    if exclusive_high is not None and value >= exclusive_high:
        value = exclusive_high - (1 if integer else 0.5)
    step = schema.get("multipleOf")
    if step:
        value = step * max(round(value / step), 1 if (low is None or low > 0) else 0)
    return int(value) if integer else float(value)


def _pick_enum(options: list, hints: Hints):
    lowered = hints.text.lower()
    for option in options:
        if isinstance(option, str) and option.lower() in lowered:
            return option
    return options[0]


def _instance(schema, root, hints: Hints, name: str = "", depth: int = 0):
    schema = _resolve(schema, root)
    if "allOf" in schema:
        schema = _merge_all_of(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return _pick_enum(schema["enum"], hints)
    if "default" in schema:
        return schema["default"]
    if schema.get("examples"):
        return schema["examples"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            for option in schema[key]:
                candidate = _instance(option, root, hints, name, depth + 1)
                if _is_valid(schema, root, candidate):
                    return candidate
            return _instance(schema[key][0], root, hints, name, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        return _object(schema, root, hints, depth)
    if kind == "array":
        return _array(name, schema, root, hints, depth)
    if kind == "integer":
        return _number(schema, integer=True)
    if kind == "number":
        return _number(schema, integer=False)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _string(name, schema, hints)


def _object(schema, root, hints: Hints, depth: int) -> dict:
    if depth > 8:
        return {}
    properties = schema.get("properties") or {}
    required = list(schema.get("required") or [])
    wanted = list(required)
    for prop_name, sub in properties.items():
        if prop_name in wanted:
            continue
        # Fill an optional field only when the conversation clearly supplies it.
        if (is_url_property(prop_name, sub) and (hints.url or hints.urls)) or (
            prop_name.lower() in TEXT_NAMES and hints.text
        ):
            wanted.append(prop_name)
    result = {}
    for prop_name in wanted:
        sub = properties.get(prop_name, {})
        result[prop_name] = _instance(sub, root, hints, prop_name, depth + 1)
    return result


def _array(name, schema, root, hints: Hints, depth: int) -> list:
    prefix = schema.get("prefixItems") or []
    items = schema.get("items", {})
    if isinstance(items, list):  # draft 4-7 tuple form
        prefix, items = items, {}
    values = [_instance(sub, root, hints, name, depth + 1) for sub in prefix]
    min_items = schema.get("minItems", 0)
    max_items = schema.get("maxItems")
    item_schema = _resolve(items, root)
    if _type_of(item_schema) == "string" and is_url_property(name, item_schema):
        values.extend(hints.urls or ([hints.url] if hints.url else []))
    count = max(min_items, 1)
    index = 0
    while len(values) < count and index < 100:
        item = _instance(items, root, hints, name, depth + 1)
        if schema.get("uniqueItems") and item in values:
            item = f"{item} {len(values) + 1}" if isinstance(item, str) else item
        values.append(item)
        index += 1
    if max_items is not None:
        values = values[:max_items]
    return values


def _is_valid(schema, root, instance) -> bool:
    check = dict(schema)
    for key in ("$defs", "definitions", "$schema"):
        if key in root:
            check.setdefault(key, root[key])
    return not validation_errors(check, instance)


def validation_errors(schema: dict, instance) -> list[str]:
    validator = validator_for(schema)(schema)
    return [error.message for error in validator.iter_errors(instance)]


def build_tool_input(schema: dict, hints: Hints) -> dict | None:
    """Input for a tool call, or None when no valid input can be formed for this schema."""
    schema = schema or {"type": "object"}
    candidate = _instance(schema, schema, hints)
    if not validation_errors(schema, candidate):
        return candidate
    return None
