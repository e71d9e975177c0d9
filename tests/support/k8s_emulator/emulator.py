"""A Kubernetes API server for tests: kmock's KubernetesScaffold with a real object store behind it.

Plain kmock 0.8 gets fourteen things wrong for real clients (listed in
/work/shared/K8S_API_EMULATOR.md and docs/TESTING.md); this class serves the resource API itself,
correctly for what kopf, the kubernetes client, kubectl and helm use, and leaves the rest of kmock
(its request model, its DSL for injecting reactions, its bundled discovery data) in place.

Why not a subclass of kmock.KubernetesEmulator: its store mutates objects inside `_handle()`, keeps
every version of every object forever and has no global resourceVersion, so fixing points 2, 5, 11
and 14 means replacing all of it; KubernetesScaffold is the part worth keeping.

All state lives in one asyncio loop (see runner.py); every mutation is synchronous code between two
awaits, so reads, writes and watch notifications are consistent without locks.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import datetime
import json
import logging
import re
import secrets
import time
import traceback
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import apps, enums, rendering

from . import patching, protobuf, rbac, schema, selectors, tables

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
StoreKey = tuple[str, str, str, str]  # group, plural, namespace ("" if cluster-scoped), name

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
CRD_GROUP, CRD_PLURAL = "apiextensions.k8s.io", "customresourcedefinitions"
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")
# What /version reports: the kubectl minor this emulator is tested with, so no client warns about skew.
_SERVER_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kmock", "gitCommit": "kmock-emulator",
                   "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23",
                   "compiler": "gc", "platform": "linux/amd64"}


class ApiError(Exception):
    """An error the API answers with a Status object."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> Obj:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "details": self.details, "code": self.code}


def version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes' version ordering: GA > beta > alpha, then higher numbers first."""
    match = _VERSION_RE.match(version)
    if not match:
        return (-1, 0, 0)
    stability = {"alpha": 0, "beta": 1, None: 2}[match.group(2)]
    return (stability, int(match.group(1)), int(match.group(3) or 0))


def now_rfc3339() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ServedResource:
    """One group/version/plural the emulator serves, with what discovery and the store need."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    subresources: frozenset[str] = frozenset()
    shortnames: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
    custom: bool = False
    schema: Obj | None = None
    printer_columns: list[Obj] = field(default_factory=list)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def has_generation(self) -> bool:
        return self.custom or self.has_status

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


@dataclass
class Change:
    """One entry of the change log that watches resume from."""

    rv: int
    group: str
    plural: str
    type: str
    obj: Obj


@dataclass(eq=False)
class Watcher:
    """One open watch stream and what it selects."""

    group: str
    plural: str
    namespace: str | None
    name: str | None
    labels: selectors.Matcher
    fields: selectors.Matcher
    queue: asyncio.Queue[Change | None]

    def wants(self, change: Change) -> bool:
        meta = change.obj.get("metadata", {})
        return (change.group == self.group and change.plural == self.plural
                and (self.namespace is None or meta.get("namespace") == self.namespace)
                and (self.name is None or meta.get("name") == self.name)
                and self.labels(change.obj) and self.fields(change.obj))


@attrs.define(kw_only=True)
class KubernetesApiEmulator(kmock.KubernetesScaffold):
    """The emulated API server (an aiohttp low-level handler; runner.py serves it on a port)."""

    history_limit: int = 200  # kmock scans its request history on every request: keep it short
    change_log_limit: int = 20_000  # watches may resume from any resourceVersion still in this log
    validate_custom_resources: bool = True  # prune, default and validate CRs by their CRD schema

    server_errors: list[str] = attrs.field(factory=list, init=False)  # tracebacks of 500s, for assertions
    _served: dict[tuple[str, str, str], ServedResource] = attrs.field(factory=dict, init=False)
    _objects: dict[StoreKey, Obj] = attrs.field(factory=dict, init=False)
    _changes: collections.deque[Change] = attrs.field(init=False)
    _rv: int = attrs.field(default=1, init=False)
    _watchers: set[Watcher] = attrs.field(factory=set, init=False)
    _applied: dict[tuple[StoreKey, str], Obj] = attrs.field(factory=dict, init=False)  # last apply per manager

    def __attrs_post_init__(self) -> None:
        # Deliberately not super().__attrs_post_init__(): kmock's fallback reactions would answer
        # the requests served here, and misparse some of them (points 1 and 4).
        self._changes = collections.deque(maxlen=self.change_log_limit)
        self.resources.load_bundled()
        for res in list(self.resources):
            info = self.resources[res]
            if not res.plural or "/" in res.plural or res.group is None or res.version is None:
                continue
            self._served[(res.group, res.version, res.plural)] = ServedResource(
                group=res.group, version=res.version, plural=res.plural,
                kind=info.kind or res.plural.capitalize(), singular=info.singular or res.plural,
                namespaced=bool(info.namespaced), subresources=frozenset(info.subresources),
                shortnames=tuple(sorted(info.shortnames)), categories=tuple(sorted(info.categories)),
                verbs=tuple(sorted(info.verbs)) or ServedResource.verbs)
        namespaces = self.served("", "v1", "namespaces")
        for name in INITIAL_NAMESPACES:
            self.create(namespaces, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    # ---------------------------------------------------------------------------------- HTTP layer

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Entry point for aiohttp: parse, remember (capped), then serve; never a bare 500."""
        try:
            request = await self._parse(raw)
            self._authorize(request, raw)
            self._requests.append(request)
            if len(self._requests) > 2 * self.history_limit:
                del self._requests[:-self.history_limit]
            if self._payloads:  # reactions a test added with kmock's DSL go first
                try:
                    return await apps.RawHandler._handle(self, request)
                except NotImplementedError:
                    pass
            return await self._serve(request, raw)
        except ApiError as exc:
            return aiohttp.web.json_response(exc.status(), status=exc.code)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            text = traceback.format_exc()
            self.server_errors.append(text)
            logger.error("emulated API failed on %s %s:\n%s", raw.method, raw.path_qs, text)
            error = ApiError(500, "InternalError", f"emulator error: {exc!r}")
            return aiohttp.web.json_response(error.status(), status=500)

    def _authorize(self, request: rendering.Request, raw: aiohttp.web.BaseRequest) -> None:
        """403 Forbidden when a ServiceAccount token's Roles do not grant the request (see rbac.py)."""
        account = rbac.service_account_of(raw.headers.get("Authorization"))
        res = request.resource
        if account is None or res is None or res.version is None or res.plural is None:
            return
        group, plural = res.group or "", res.plural
        resource = f"{plural}/{request.subresource}" if request.subresource else plural
        name = request.name  # None for create and list: those are authorized without a name, as on a cluster
        served = self._served.get((group, res.version, plural))
        namespace = request.namespace if served is None or served.namespaced else None
        verb = rbac.verb_of(raw.method, name, request.action == enums.action.WATCH)

        def objects(kind_plural: str, ns: str | None) -> list[Obj]:
            return [obj for (g, p, n, _), obj in self._objects.items()
                    if g == rbac.RBAC_GROUP and p == kind_plural and (ns is None or n == ns)]

        if not rbac.allowed(account, verb, group, resource, namespace, name, objects):
            raise ApiError(403, "Forbidden", rbac.forbidden_message(account, verb, group, resource, namespace, name),
                           {"name": name or "", "group": group, "kind": plural})

    async def _parse(self, raw: aiohttp.web.BaseRequest) -> rendering.Request:
        body = await raw.read()
        content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
        data: Any = None
        if body:
            try:
                if content_type == "application/vnd.kubernetes.protobuf":
                    data = protobuf.decode(body)
                elif content_type == "application/apply-patch+yaml":
                    data = yaml.safe_load(body)
                else:
                    data = json.loads(body)
            except protobuf.ProtobufDecodeError as exc:
                raise ApiError(415, "UnsupportedMediaType", str(exc)) from None
            except (ValueError, yaml.YAMLError) as exc:
                raise ApiError(400, "BadRequest", f"the request body is not valid: {exc}") from None
        group, version, namespace, plural, name, subresource = parse_path(raw.path)
        params = dict(raw.query)
        return rendering.Request(
            id=self._rv, raw_request=raw, url=raw.url, method=raw.method, params=params,
            headers=dict(raw.headers), cookies=dict(raw.cookies), body=body,
            text=body.decode("utf-8", "replace"), data=data,
            action=guess_action(raw.method, name, params),
            resource=kmock.resource(group=group, version=version, plural=plural) if group is not None else None,
            namespace=namespace, name=name, subresource=subresource)

    async def _serve(self, request: rendering.Request, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is None or res.version is None or res.plural is None:
            return aiohttp.web.json_response(self._discovery(raw.method, raw.path))
        served = self.served(res.group or "", res.version, res.plural)
        if served.namespaced is False and request.namespace is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = request.namespace if served.namespaced else None
        name, sub, params, data = request.name, request.subresource, request.params, request.data
        dry_run = params.get("dryRun") == "All"
        if sub is not None and (name is None or sub not in served.subresources or sub != "status"):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({sub})")
        method = raw.method.upper()
        if method == "GET" and request.action == enums.action.WATCH:
            return await self._watch(served, namespace, name, params, raw)
        if method == "GET" and name is None:
            items = self.list(served, namespace, params.get("labelSelector"), params.get("fieldSelector"))
            accept = raw.headers.get("Accept", "")
            if "as=Table" in accept:
                return aiohttp.web.json_response(tables.table(served, items, self.resource_version))
            return aiohttp.web.json_response({
                "apiVersion": served.api_version, "kind": f"{served.kind}List",
                "metadata": {"resourceVersion": str(self.resource_version)}, "items": items})
        if method == "GET":
            obj = self.get(served, namespace, name)
            if "as=Table" in raw.headers.get("Accept", ""):
                return aiohttp.web.json_response(tables.table(served, [obj], self.resource_version))
            return aiohttp.web.json_response(obj)
        if method == "POST" and name is None:
            obj = self.create(served, namespace, _require_object(data), dry_run=dry_run)
            return aiohttp.web.json_response(obj, status=201)
        if method == "PUT" and name is not None:
            return aiohttp.web.json_response(
                self.replace(served, namespace, name, _require_object(data), subresource=sub, dry_run=dry_run))
        if method == "PATCH" and name is not None:
            content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
            obj, created = self.patch(served, namespace, name, content_type, data, subresource=sub,
                                      field_manager=params.get("fieldManager"), dry_run=dry_run)
            return aiohttp.web.json_response(obj, status=201 if created else 200)
        if method == "DELETE" and name is not None:
            return aiohttp.web.json_response(self.delete(served, namespace, name, data or {}, dry_run=dry_run))
        if method == "DELETE":
            items = self.list(served, namespace, params.get("labelSelector"), params.get("fieldSelector"))
            deleted = [self.delete(served, namespace if served.namespaced else None, item["metadata"]["name"],
                                   data or {}, dry_run=dry_run) for item in items]
            return aiohttp.web.json_response({"apiVersion": served.api_version, "kind": f"{served.kind}List",
                                              "metadata": {"resourceVersion": str(self.resource_version)},
                                              "items": deleted})
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {raw.path}")

    # ------------------------------------------------------------------------------- discovery

    def served(self, group: str, version: str, plural: str) -> ServedResource:
        try:
            return self._served[(group, version, plural)]
        except KeyError:
            raise ApiError(404, "NotFound", "the server could not find the requested resource",
                           {"group": group, "kind": plural}) from None

    def served_for(self, api_version: str, kind: str) -> ServedResource:
        """Look a resource up by apiVersion and kind, as a manifest names it."""
        group, _, version = api_version.rpartition("/")
        for served in self._served.values():
            if served.group == group and served.version == version and served.kind == kind:
                return served
        raise ApiError(404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"')

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, set[str]] = collections.defaultdict(set)
        for group, version, _ in self._served:
            groups[group].add(version)
        return {group: sorted(versions, key=version_priority, reverse=True) for group, versions in groups.items()}

    def _api_group(self, group: str, versions: list[str]) -> Obj:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def _discovery(self, method: str, path: str) -> Obj:
        if method.upper() != "GET":
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
        path = "/" + path.strip("/")
        groups = self._groups()
        if path in ("/healthz", "/livez", "/readyz"):
            return {"status": "ok"}
        if path == "/version":
            return dict(_SERVER_VERSION)
        if path == "/":
            paths = {"/api", "/api/v1", "/apis", "/version", "/healthz", "/livez", "/readyz"}
            for group, versions in groups.items():
                if group:
                    paths |= {f"/apis/{group}"} | {f"/apis/{group}/{v}" for v in versions}
            return {"paths": sorted(paths)}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [self._api_group(g, v) for g, v in sorted(groups.items()) if g]}
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 2 and parts[1] in groups:
            return {"kind": "APIGroup", "apiVersion": "v1", **self._api_group(parts[1], groups[parts[1]])}
        if (parts[0] == "api" and len(parts) == 2) or (parts[0] == "apis" and len(parts) == 3):
            group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
            resources = [s for (g, v, _), s in sorted(self._served.items()) if g == group and v == version]
            if resources:
                return {"kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": f"{group}/{version}" if group else version,  # point 4: "v1", not "/v1"
                        "resources": [entry for s in resources for entry in _discovery_entries(s)]}
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    # ---------------------------------------------------------------------------------- the store

    @property
    def resource_version(self) -> int:
        return self._rv

    def _key(self, served: ServedResource, namespace: str | None, name: str) -> StoreKey:
        return (served.group, served.plural, namespace or "", name)

    def _view(self, served: ServedResource, obj: Obj) -> Obj:
        return {**obj, "apiVersion": served.api_version, "kind": served.kind}

    def _commit(self, served: ServedResource, key: StoreKey, obj: Obj, event: str) -> Obj:
        """Store (or drop) one object under a new resourceVersion and tell the watches."""
        self._rv += 1
        obj = {**obj, "metadata": {**obj.get("metadata", {}), "resourceVersion": str(self._rv)}}
        if event == "DELETED":
            self._objects.pop(key, None)
            for applied_key in [k for k in self._applied if k[0] == key]:
                del self._applied[applied_key]
        else:
            self._objects[key] = obj
        change = Change(self._rv, served.group, served.plural, event, obj)
        self._changes.append(change)
        for watcher in list(self._watchers):
            if watcher.wants(change):
                watcher.queue.put_nowait(change)
        return obj

    def _require(self, served: ServedResource, namespace: str | None, name: str) -> Obj:
        obj = self._objects.get(self._key(served, namespace, name))
        if obj is None:
            raise ApiError(404, "NotFound", f'{served.group_resource} "{name}" not found',
                           {"name": name, "group": served.group, "kind": served.plural})
        return obj

    def get(self, served: ServedResource, namespace: str | None, name: str) -> Obj:
        return self._view(served, self._require(served, namespace, name))

    def list(self, served: ServedResource, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[Obj]:
        try:
            labels, fields = selectors.label_matcher(label_selector), selectors.field_matcher(field_selector)
        except selectors.SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        found = [obj for (group, plural, ns, _), obj in self._objects.items()
                 if group == served.group and plural == served.plural and (namespace is None or ns == namespace)]
        found = [self._view(served, obj) for obj in found if labels(obj) and fields(obj)]
        return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def create(self, served: ServedResource, namespace: str | None, body: Obj, dry_run: bool = False) -> Obj:
        obj = copy.deepcopy(body)
        self._check_type(served, obj)
        meta = obj.setdefault("metadata", {})
        if served.namespaced:
            namespace = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match "
                                                  "the namespace sent on the request")
            if ("", "namespaces", "", namespace) not in self._objects:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                               {"name": namespace, "kind": "namespaces"})
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name")
        self._check_name(served, name)
        key = self._key(served, namespace, name)
        if key in self._objects:
            raise ApiError(409, "AlreadyExists", f'{served.group_resource} "{name}" already exists',
                           {"name": name, "group": served.group, "kind": served.plural})
        for server_field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                             "deletionGracePeriodSeconds", "generation", "managedFields", "selfLink"):
            meta.pop(server_field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if served.has_generation:
            meta["generation"] = 1
        if served.has_status:
            obj.pop("status", None)
        obj = self._prepare(served, obj, None)
        if dry_run:
            return self._view(served, obj)
        obj = self._commit(served, key, obj, "ADDED")
        self._after_write(served, None, obj)
        return self._view(served, obj)

    def replace(self, served: ServedResource, namespace: str | None, name: str, body: Obj,
                subresource: str | None = None, dry_run: bool = False) -> Obj:
        old = self._require(served, namespace, name)
        self._check_type(served, body)
        wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise self._conflict(served, name)
        return self._update(served, old, copy.deepcopy(body), subresource, dry_run)

    def patch(self, served: ServedResource, namespace: str | None, name: str, content_type: str, body: Any,
              subresource: str | None = None, field_manager: str | None = None,
              dry_run: bool = False) -> tuple[Obj, bool]:
        """Apply a patch of any of the four types; returns (object, whether it was created)."""
        key = self._key(served, namespace, name)
        old = self._objects.get(key)
        if content_type == "application/apply-patch+yaml":
            if not field_manager:
                raise ApiError(400, "BadRequest", "PATCH of type apply requires the fieldManager parameter")
            applied = _require_object(body)
            if old is None:
                if subresource is not None:
                    self._require(served, namespace, name)
                created = self.create(served, namespace, {**applied, "metadata": {
                    **applied.get("metadata", {}), "name": name}}, dry_run=dry_run)
                if not dry_run:
                    self._applied[(key, field_manager)] = applied
                return created, True
            new = patching.apply_patch(old, applied, self._applied.get((key, field_manager)))
            if not dry_run:
                self._applied[(key, field_manager)] = applied
        else:
            if old is None:
                self._require(served, namespace, name)
            assert old is not None
            try:
                if content_type == "application/json-patch+json":
                    new = patching.json_patch(old, body)
                elif content_type == "application/merge-patch+json":
                    new = patching.merge_patch(old, _require_object(body))
                elif content_type == "application/strategic-merge-patch+json" and not served.custom:
                    new = patching.strategic_merge_patch(old, _require_object(body))
                else:
                    raise ApiError(415, "UnsupportedMediaType",
                                   f"the body of the request was in an unknown format - accepted media types "
                                   f"include: application/json-patch+json, application/merge-patch+json, "
                                   f"application/apply-patch+yaml{'' if served.custom else ', application/strategic-merge-patch+json'}")
            except patching.PatchError as exc:
                raise ApiError(422, "Invalid", str(exc), {"name": name, "group": served.group,
                                                          "kind": served.plural}) from None
        new_rv = (new.get("metadata") or {}).get("resourceVersion")
        if new_rv and new_rv != old["metadata"]["resourceVersion"]:
            raise self._conflict(served, name)
        return self._update(served, old, new, subresource, dry_run), False

    def _update(self, served: ServedResource, old: Obj, new: Obj, subresource: str | None, dry_run: bool) -> Obj:
        old_meta = old["metadata"]
        if served.has_status and subresource == "status":
            new = {**copy.deepcopy(old), "status": new.get("status")}
            if new["status"] is None:
                del new["status"]
        elif served.has_status:
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        meta = new.setdefault("metadata", {})
        for kept in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                     "deletionGracePeriodSeconds", "generation"):
            meta.pop(kept, None)
            if kept in old_meta:
                meta[kept] = old_meta[kept]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new = self._prepare(served, new, old)
        if served.has_generation and _spec_of(new, served) != _spec_of(old, served):
            meta["generation"] = old_meta.get("generation", 1) + 1
        if new == old:
            return self._view(served, old)  # a no-op write: no new resourceVersion, no watch event
        if dry_run:
            return self._view(served, new)
        key = self._key(served, meta.get("namespace"), meta["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            obj = self._commit(served, key, new, "DELETED")
            self._after_delete(served, obj)
            return self._view(served, obj)
        obj = self._commit(served, key, new, "MODIFIED")
        self._after_write(served, old, obj)
        return self._view(served, obj)

    def delete(self, served: ServedResource, namespace: str | None, name: str, options: Obj,
               dry_run: bool = False) -> Obj:
        old = self._require(served, namespace, name)
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != old["metadata"]["uid"]:
            raise self._conflict(served, name, "the UID in the precondition does not match")
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != old["metadata"][
                "resourceVersion"]:
            raise self._conflict(served, name)
        if dry_run or options.get("dryRun") == ["All"]:
            return self._view(served, old)
        key = self._key(served, namespace, name)
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return self._view(served, old)
            marked = copy.deepcopy(old)
            marked["metadata"].update(deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0)
            return self._view(served, self._commit(served, key, marked, "MODIFIED"))
        obj = self._commit(served, key, old, "DELETED")
        orphan = options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents") is True
        self._after_delete(served, obj, orphan=orphan)
        return self._view(served, obj)

    # ------------------------------------------------------------------- kind-specific behaviour

    def _check_type(self, served: ServedResource, obj: Obj) -> None:
        if not isinstance(obj.get("metadata", {}), dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if obj.get("kind") not in (None, served.kind) or obj.get("apiVersion") not in (None, served.api_version):
            raise ApiError(400, "BadRequest", f"the API version in the data ({obj.get('apiVersion')}) and kind "
                                              f"({obj.get('kind')}) do not match {served.api_version} {served.kind}")

    def _check_name(self, served: ServedResource, name: Any) -> None:
        if not name:
            raise ApiError(422, "Invalid", f'{served.kind} "" is invalid: metadata.name: Required value: '
                                           f"name or generateName is required",
                           {"kind": served.kind, "group": served.group,
                            "causes": [{"reason": "FieldValueRequired", "field": "metadata.name",
                                        "message": "Required value: name or generateName is required"}]})
        if not isinstance(name, str) or len(name) > 253 or not _NAME_RE.match(name):
            raise ApiError(422, "Invalid", f'{served.kind} "{name}" is invalid: metadata.name: Invalid value: '
                                           f'"{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                                           f"alphanumeric characters, '-' or '.'",
                           {"name": str(name), "kind": served.kind, "group": served.group})

    def _conflict(self, served: ServedResource, name: str,
                  why: str = "the object has been modified; please apply your changes to the latest version "
                             "and try again") -> ApiError:
        return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {served.group_resource} "{name}": {why}',
                        {"name": name, "group": served.group, "kind": served.plural})

    def _prepare(self, served: ServedResource, obj: Obj, old: Obj | None) -> Obj:
        """What the API server does to an object before storing it, per kind."""
        if served.group == "" and served.plural == "namespaces":
            obj["status"] = {"phase": "Active"}
        elif served.group == "" and served.plural == "secrets" and "stringData" in obj:
            data = dict(obj.get("data") or {})
            for k, v in (obj.pop("stringData") or {}).items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
        elif served.group == CRD_GROUP and served.plural == CRD_PLURAL:
            obj = self._prepare_crd(obj, old)
        elif served.custom and self.validate_custom_resources and served.schema is not None:
            meta = obj.get("metadata", {})
            rest = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
            root = {k: v for k, v in served.schema.items()}
            props = {k: v for k, v in (root.get("properties") or {}).items()
                     if k not in ("apiVersion", "kind", "metadata")}
            obj = {**({"apiVersion": obj["apiVersion"]} if "apiVersion" in obj else {}),
                   **({"kind": obj["kind"]} if "kind" in obj else {}), "metadata": meta,
                   **schema.prune_and_default(rest, {**root, "properties": props})}
            problems = schema.validate(obj, served.schema)
            if problems:
                name = meta.get("name", "")
                raise ApiError(422, "Invalid",
                               f'{served.kind}.{served.group} "{name}" is invalid: '
                               + (f"{problems[0][0]}: {problems[0][1]}" if len(problems) == 1 else
                                  "[" + ", ".join(f"{path}: {message}" for path, message in problems) + "]"),
                               {"name": name, "group": served.group, "kind": served.kind,
                                "causes": [{"reason": "FieldValueInvalid", "message": message, "field": path}
                                           for path, message in problems]})
        return obj

    def _prepare_crd(self, crd: Obj, old: Obj | None) -> Obj:
        spec = crd.get("spec") or {}
        names = dict(spec.get("names") or {})
        versions = spec.get("versions") or []
        name = crd["metadata"].get("name")
        problems = []
        if not spec.get("group") or not names.get("plural") or not names.get("kind") or not versions:
            problems.append("spec.group, spec.names.plural, spec.names.kind and spec.versions are required")
        elif name != f"{names['plural']}.{spec['group']}":
            problems.append(f'metadata.name: Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            problems.append('spec.scope: Unsupported value: supported values: "Cluster", "Namespaced"')
        if sum(1 for v in versions if v.get("storage")) != 1:
            problems.append("spec.versions: Invalid value: must have exactly one version marked as storage version")
        if problems:
            raise ApiError(422, "Invalid", f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: '
                                           + "; ".join(problems),
                           {"name": name, "group": CRD_GROUP, "kind": "CustomResourceDefinition"})
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", f"{names['kind']}List")
        stamp = (old or {}).get("status", {}).get("conditions", [{}])[0].get("lastTransitionTime") or now_rfc3339()
        crd["status"] = {
            "acceptedNames": names,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": stamp},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": stamp},
            ],
            "storedVersions": [v["name"] for v in versions if v.get("storage")],
        }
        return crd

    def _after_write(self, served: ServedResource, old: Obj | None, new: Obj) -> None:
        if served.group == CRD_GROUP and served.plural == CRD_PLURAL:
            if old is not None:
                self._unregister_crd(old, keep_objects=True)
            self._register_crd(new)

    def _after_delete(self, served: ServedResource, obj: Obj, orphan: bool = False) -> None:
        """Cascades: CRD -> its objects, namespace -> its contents, owner -> dependents."""
        if served.group == CRD_GROUP and served.plural == CRD_PLURAL:
            self._unregister_crd(obj, keep_objects=False)
        if served.group == "" and served.plural == "namespaces":
            for key in [k for k in self._objects if k[2] == obj["metadata"]["name"]]:
                self._delete_by_key(key)
        if not orphan:
            uid = obj["metadata"].get("uid")
            for key, other in list(self._objects.items()):
                refs = other.get("metadata", {}).get("ownerReferences") or []
                if any(ref.get("uid") == uid for ref in refs):
                    self._delete_by_key(key)

    def _delete_by_key(self, key: StoreKey) -> None:
        if key not in self._objects:
            return
        served = self._served_by_group_plural(key[0], key[1])
        if served is not None:
            self.delete(served, key[2] or None, key[3], {})

    def _served_by_group_plural(self, group: str, plural: str) -> ServedResource | None:
        candidates = [s for (g, _, p), s in self._served.items() if g == group and p == plural]
        return max(candidates, key=lambda s: version_priority(s.version)) if candidates else None

    def _register_crd(self, crd: Obj) -> None:
        spec, names = crd["spec"], crd["status"]["acceptedNames"]
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            subresources = frozenset((version.get("subresources") or {}).keys())
            served = ServedResource(
                group=spec["group"], version=version["name"], plural=names["plural"], kind=names["kind"],
                singular=names["singular"], namespaced=spec["scope"] == "Namespaced", subresources=subresources,
                shortnames=tuple(names.get("shortNames") or ()), categories=tuple(names.get("categories") or ()),
                custom=True, schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=list(version.get("additionalPrinterColumns") or []))
            self._served[(served.group, served.version, served.plural)] = served
            self.resources[kmock.resource(group=served.group, version=served.version, plural=served.plural)] = kmock.ResourceInfo(
                kind=served.kind, singular=served.singular, namespaced=served.namespaced,
                shortnames=set(served.shortnames), categories=set(served.categories),
                subresources=set(subresources), verbs=set(served.verbs))

    def _unregister_crd(self, crd: Obj, keep_objects: bool) -> None:
        spec = crd.get("spec") or {}
        plural = (spec.get("names") or {}).get("plural")
        if not keep_objects:
            for key in [k for k in self._objects if k[0] == spec.get("group") and k[1] == plural]:
                self._delete_by_key(key)
        for version in spec.get("versions") or []:
            self._served.pop((spec.get("group"), version.get("name"), plural), None)
            self.resources.pop(kmock.resource(group=spec.get("group"), version=version.get("name"), plural=plural), None)

    # --------------------------------------------------------------------------------- watching

    async def _watch(self, served: ServedResource, namespace: str | None, name: str | None, params: Mapping[str, str],
                     raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            fields = selectors.field_matcher(params.get("fieldSelector"))
            labels = selectors.label_matcher(params.get("labelSelector"))
        except selectors.SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        since = params.get("resourceVersion") or ""
        if since and not since.isdigit():
            raise ApiError(400, "BadRequest", f"invalid resourceVersion {since!r}")
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds", "").isdigit() else None
        watcher = Watcher(served.group, served.plural, namespace, name, labels, fields, asyncio.Queue())
        backlog = self._backlog(served, watcher, since, params.get("sendInitialEvents") == "true")
        self._watchers.add(watcher)  # registered in the same synchronous step as the backlog: no gap
        # application/json, not octet-stream: client-go has no stream decoder for the latter (point 10).
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(raw)
            for line in backlog:
                await response.write(line)
            if backlog and backlog[-1].startswith(b'{"type": "ERROR"'):
                timeout = 0  # the server ends a watch after an error event
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                try:
                    change = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    break
                if change is None:  # the emulator is stopping
                    break
                await response.write(self._event_line(served, change.type, change.obj))
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            self._watchers.discard(watcher)
        return response

    def _event_line(self, served: ServedResource, event: str, obj: Obj) -> bytes:
        return json.dumps({"type": event, "object": self._view(served, obj)}).encode() + b"\n"

    def _backlog(self, served: ServedResource, watcher: Watcher, since: str, send_initial: bool) -> list[bytes]:
        """What a new watch gets before live events: current objects, or the changes after `since`."""
        if send_initial or since in ("", "0"):
            current = [obj for (g, p, _, _), obj in self._objects.items() if g == served.group and p == served.plural]
            lines = [self._event_line(served, "ADDED", obj) for obj in sorted(current, key=_rv_of)
                     if watcher.wants(Change(0, served.group, served.plural, "ADDED", obj))]
            if send_initial:  # WatchList (point 13): the bookmark that ends the initial events
                lines.append(json.dumps({"type": "BOOKMARK", "object": {
                    "apiVersion": served.api_version, "kind": served.kind, "metadata": {
                        "resourceVersion": str(self._rv),
                        "annotations": {"k8s.io/initial-events-end": "true"}}}}).encode() + b"\n")
            return lines
        wanted = int(since)
        if len(self._changes) == self._changes.maxlen and self._changes[0].rv > wanted + 1:
            expired = ApiError(410, "Expired", f"too old resource version: {wanted} ({self._changes[0].rv - 1})")
            return [json.dumps({"type": "ERROR", "object": expired.status()}).encode() + b"\n"]
        return [self._event_line(served, change.type, change.obj) for change in self._changes
                if change.rv > wanted and watcher.wants(change)]

    def stop_watches(self) -> None:
        """End every open watch stream (before the server shuts down)."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)

    # ----------------------------------------------------------------------- direct test helpers

    def apply_manifest(self, manifest: Obj) -> Obj:
        """Create the object, or replace it if it exists (what tests use to seed state)."""
        served = self.served_for(manifest["apiVersion"], manifest["kind"])
        meta = manifest.get("metadata") or {}
        namespace = (meta.get("namespace") or "default") if served.namespaced else None
        if self._key(served, namespace, meta.get("name", "")) in self._objects:
            return self.replace(served, namespace, meta["name"], {k: v for k, v in manifest.items()})
        return self.create(served, namespace, manifest)


def _rv_of(obj: Obj) -> int:
    return int(obj["metadata"]["resourceVersion"])


def _spec_of(obj: Obj, served: ServedResource) -> Obj:
    """What changes metadata.generation: everything but metadata (and status, if a subresource)."""
    skipped = {"metadata", "status"} if served.has_status else {"metadata"}
    return {k: v for k, v in obj.items() if k not in skipped}


def _require_object(data: Any) -> Obj:
    if not isinstance(data, dict):
        raise ApiError(400, "BadRequest", "the request body must be a JSON object")
    return data


def _discovery_entries(served: ServedResource) -> Iterable[Obj]:
    yield {"name": served.plural, "singularName": served.singular, "namespaced": served.namespaced,
           "kind": served.kind, "verbs": list(served.verbs), "shortNames": list(served.shortnames),
           "categories": list(served.categories)}
    for sub in sorted(served.subresources):
        yield {"name": f"{served.plural}/{sub}", "singularName": "", "namespaced": served.namespaced,
               "kind": served.kind, "verbs": ["get", "patch", "update"]}


def parse_path(path: str) -> tuple[str | None, str | None, str | None, str | None, str | None, str | None]:
    """(group, version, namespace, plural, name, subresource) of an API path; group None if not one.

    Unlike kmock 0.8 (point 1), `/api/v1/namespaces` and `/api/v1/namespaces/NAME[/status]` are
    the namespaces resource itself, not a namespace prefix.
    """
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    elif len(parts) == 2 and parts[0] == "apis":
        return parts[1], None, None, None, None, None
    else:
        return None, None, None, None, None, None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return group, version, namespace, plural, name, subresource


def guess_action(method: str, name: str | None, params: Mapping[str, str]) -> enums.action | None:
    method = method.upper()
    if method == "GET" and params.get("watch") in ("true", "1"):
        return enums.action.WATCH
    if method == "GET":
        return enums.action.LIST if name is None else enums.action.FETCH
    if method == "POST":
        return enums.action.CREATE
    if method in ("PUT", "PATCH"):
        return enums.action.UPDATE
    if method == "DELETE":
        return enums.action.DELETE
    return None
