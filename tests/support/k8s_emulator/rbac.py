"""RBAC for ServiceAccount tokens: what the API server's authorizer decides from Roles and bindings.

Tokens of the form `serviceaccount:<namespace>:<name>` act as that ServiceAccount and are authorized against
the Role/ClusterRole objects and their bindings in the store; any other token is a cluster admin (the default
for tests). Discovery and /version are open to everyone, as system:discovery grants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Obj = dict[str, Any]
TOKEN_PREFIX = "serviceaccount:"
RBAC_GROUP = "rbac.authorization.k8s.io"


def service_account_of(authorization: str | None) -> tuple[str, str] | None:
    """(namespace, name) for a `Bearer serviceaccount:<ns>:<name>` header, else None (an admin)."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    token = authorization[7:].strip()
    if not token.startswith(TOKEN_PREFIX) or token.count(":") != 2:
        return None
    _, namespace, name = token.split(":")
    return namespace, name


def verb_of(method: str, name: str | None, watch: bool) -> str:
    method = method.upper()
    if method == "GET":
        return "watch" if watch else "get" if name else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method) or (
        "delete" if name else "deletecollection")


def _matches(values: Iterable[str], wanted: str) -> bool:
    values = list(values or [])
    return "*" in values or wanted in values


def _rule_allows(rule: Obj, group: str, resource: str, verb: str, name: str | None) -> bool:
    names = rule.get("resourceNames") or []
    return (_matches(rule.get("apiGroups"), group) and _matches(rule.get("resources"), resource)
            and _matches(rule.get("verbs"), verb) and (not names or (name is not None and name in names)))


def _binds(binding: Obj, account: tuple[str, str]) -> bool:
    namespace, name = account
    default_ns = (binding.get("metadata") or {}).get("namespace")
    return any(s.get("kind") == "ServiceAccount" and s.get("name") == name
               and (s.get("namespace") or default_ns) == namespace for s in binding.get("subjects") or [])


def allowed(account: tuple[str, str], verb: str, group: str, resource: str, namespace: str | None, name: str | None,
            objects: Callable[[str, str | None], list[Obj]]) -> bool:
    """Whether any binding of the account grants the request; objects(plural, namespace) lists RBAC objects."""
    rules: list[Obj] = []
    for binding in objects("clusterrolebindings", None):
        if _binds(binding, account) and binding["roleRef"]["kind"] == "ClusterRole":
            rules += _role_rules(objects("clusterroles", None), binding["roleRef"]["name"])
    if namespace is not None:
        for binding in objects("rolebindings", namespace):
            if not _binds(binding, account):
                continue
            ref = binding["roleRef"]
            source = objects("roles", namespace) if ref["kind"] == "Role" else objects("clusterroles", None)
            rules += _role_rules(source, ref["name"])
    return any(_rule_allows(rule, group, resource, verb, name) for rule in rules)


def _role_rules(roles: list[Obj], name: str) -> list[Obj]:
    return [rule for role in roles if role["metadata"]["name"] == name for rule in role.get("rules") or []]


def forbidden_message(account: tuple[str, str], verb: str, group: str, resource: str, namespace: str | None,
                      name: str | None) -> str:
    """The API server's wording, so that logs read the same as on a cluster."""
    user = f"system:serviceaccount:{account[0]}:{account[1]}"
    plural, _, sub = resource.partition("/")
    target = f'{plural}{"." + group if group else ""} "{name}"' if name else f"{plural}{'.' + group if group else ''}"
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    subresource = f' subresource "{sub}"' if sub else ""
    return (f'{target} is forbidden: User "{user}" cannot {verb} resource "{plural}"{subresource} in API group '
            f'"{group}"{where}')
