"""Terraform files as python-hcl2 parses them, made plain: quotes and ${...} unwrapped, its
"__is_block__" markers dropped, blocks gathered by label."""

import re


def unquote(value):
    """python-hcl2 keeps the quotes of string literals and wraps expressions in ${...}."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            return value[1:-1]
        if value.startswith("${") and value.endswith("}"):
            return value[2:-1]
    return value


def strip_meta(value):
    """Drop python-hcl2's "__is_block__" markers and unquote keys and string values."""
    if isinstance(value, dict):
        return {unquote(k): strip_meta(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [strip_meta(v) for v in value]
    return unquote(value)


def blocks(parsed, kind):
    """{label: body} for one-label blocks (variable, output, module, provider)."""
    found = {}
    for doc in parsed.values():
        for entry in doc.get(kind, []):
            for label, body in strip_meta(entry).items():
                found[label] = body
    return found


def typed_blocks(parsed, kind):
    """{(type, name): body} for two-label blocks (resource, data, ephemeral)."""
    found = {}
    for doc in parsed.values():
        for entry in doc.get(kind, []):
            for rtype, named in strip_meta(entry).items():
                for name, body in named.items():
                    found[(rtype, name)] = body
    return found


def merged_locals(parsed):
    merged = {}
    for doc in parsed.values():
        for entry in doc.get("locals", []):
            merged.update(strip_meta(entry))
    return merged


def code_without_comments(path):
    return "\n".join(re.sub(r"(^|\s)(#|//).*$", "", line) for line in path.read_text().splitlines())
