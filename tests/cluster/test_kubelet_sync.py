"""scripts/sim/kubelet_sync.py: ConfigMap and Secret volumes projected the way a kubelet mounts them."""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

import pytest

from scripts.sim.kubelet_sync import (
    DATA_LINK,
    KubeletSync,
    MissingKey,
    VolumeSource,
    api_reader,
    pod_projections,
    project,
    read_projection,
    volume_files,
)
from tests.support.cluster import Cluster, wait_for


def configmap(name: str, **data: str) -> dict:
    return {"kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def test_a_projection_is_files_behind_the_data_link_and_each_key_a_link_into_it(tmp_path: Path) -> None:
    assert project(tmp_path / "vol", {"routing.json": (b'{"a": 1}', 0o644), "b/c.txt": (b"c", 0o600)})
    vol = tmp_path / "vol"
    assert (vol / "routing.json").read_bytes() == b'{"a": 1}' and (vol / "b" / "c.txt").read_bytes() == b"c"
    assert os.readlink(vol / "routing.json") == f"{DATA_LINK}/routing.json"
    assert os.readlink(vol / "b") == f"{DATA_LINK}/b"
    assert (vol / DATA_LINK).is_symlink() and os.readlink(vol / DATA_LINK).startswith("..")
    assert (vol / "b" / "c.txt").stat().st_mode & 0o777 == 0o600


def test_an_unchanged_object_is_not_projected_again(tmp_path: Path) -> None:
    files = {"k": (b"v", 0o644)}
    assert project(tmp_path, files)
    data_dir = os.readlink(tmp_path / DATA_LINK)
    assert not project(tmp_path, files)
    assert os.readlink(tmp_path / DATA_LINK) == data_dir


def test_a_change_swaps_the_data_link_drops_removed_keys_and_the_old_version(tmp_path: Path) -> None:
    project(tmp_path, {"keep": (b"1", 0o644), "gone": (b"x", 0o644)})
    old_dir = tmp_path / os.readlink(tmp_path / DATA_LINK)
    old_inode = (tmp_path / "keep").stat().st_ino
    assert project(tmp_path, {"keep": (b"2", 0o644), "new": (b"n", 0o644)})
    assert (tmp_path / "keep").read_bytes() == b"2" and (tmp_path / "new").read_bytes() == b"n"
    assert not (tmp_path / "gone").exists() and not (tmp_path / "gone").is_symlink()
    assert not old_dir.exists(), "the previous version's directory is removed after the swap"
    assert (tmp_path / "keep").stat().st_ino != old_inode, "readers that watch the inode see the change"
    assert read_projection(tmp_path) == {"keep": (b"2", 0o644), "new": (b"n", 0o644)}


def test_an_empty_object_projects_an_empty_volume(tmp_path: Path) -> None:
    assert project(tmp_path / "vol", {})
    assert read_projection(tmp_path / "vol") == {}
    assert sorted(p.name for p in (tmp_path / "vol").iterdir() if not p.name.startswith("..")) == []


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "..data/x", ""])
def test_paths_that_leave_the_volume_or_hit_the_data_link_are_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(ValueError):
        project(tmp_path, {path: (b"x", 0o644)})


def test_a_reader_polling_during_swaps_only_ever_sees_a_whole_version(tmp_path: Path) -> None:
    versions = [json.dumps({"generation": i, "pad": "x" * 20000}).encode() for i in range(60)]
    project(tmp_path, {"routing.json": (versions[0], 0o644)})
    seen: list[bytes] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            seen.append((tmp_path / "routing.json").read_bytes())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for content in versions[1:]:
            project(tmp_path, {"routing.json": (content, 0o644)})
    finally:
        done.set()
        thread.join()
    assert seen and set(seen) <= set(versions), "a read never returns a partly written or mixed file"


def test_volume_sources_follow_the_pod_spec_items_modes_and_secret_encoding() -> None:
    volume = {"name": "api-keys", "secret": {"secretName": "keys", "defaultMode": 0o440,
                                             "items": [{"key": "api-keys", "path": "api-keys"}]}}
    source = VolumeSource.from_volume(volume)
    assert source is not None and (source.kind, source.name, source.default_mode) == ("Secret", "keys", 0o440)
    secret = {"kind": "Secret", "data": {"api-keys": base64.b64encode(b"sha256:ab default\n").decode(),
                                         "api-key": base64.b64encode(b"plain").decode()}}
    assert volume_files(source, secret) == {"api-keys": (b"sha256:ab default\n", 0o440)}, "only the listed items"
    cm_source = VolumeSource.from_volume({"name": "r", "configMap": {"name": "routing"}})
    assert cm_source is not None
    assert volume_files(cm_source, {"kind": "ConfigMap", "data": {"a": "1"},
                                    "binaryData": {"b": base64.b64encode(b"\x00").decode()}}) == {
        "a": (b"1", 0o644), "b": (b"\x00", 0o644)}
    assert VolumeSource.from_volume({"name": "tmp", "emptyDir": {}}) is None
    with pytest.raises(MissingKey):
        volume_files(source, {"kind": "Secret", "data": {}})


def test_the_sync_waits_for_a_missing_object_and_follows_its_changes(tmp_path: Path) -> None:
    objects: dict[tuple[str, str], dict] = {}
    spec = {"volumes": [{"name": "routing", "configMap": {"name": "routing"}},
                        {"name": "opt", "configMap": {"name": "maybe", "optional": True}},
                        {"name": "tmp", "emptyDir": {}}]}
    projections = pod_projections(spec, "frontend", tmp_path)
    assert [p.volume for p in projections] == ["routing", "opt"]
    sync = KubeletSync(lambda kind, name: objects.get((kind, name)), projections)
    routing_dir = tmp_path / "frontend" / "volumes" / "routing"
    assert sync.sync_once() == [tmp_path / "frontend" / "volumes" / "opt"], "optional and absent: an empty volume"
    assert not routing_dir.exists(), "a required object that does not exist yet is waited for"
    objects[("ConfigMap", "routing")] = configmap("routing")
    assert sync.sync_once() == [routing_dir] and read_projection(routing_dir) == {}
    objects[("ConfigMap", "routing")] = configmap("routing", **{"routing.json": '{"generation": 1}'})
    assert sync.sync_once() == [routing_dir]
    assert (routing_dir / "routing.json").read_text() == '{"generation": 1}'
    assert sync.sync_once() == []


def test_against_the_api_server_the_volumes_of_a_deployment_follow_its_configmap(cluster: Cluster,
                                                                                 tmp_path: Path) -> None:
    cluster.check(cluster.kubectl("create", "configmap", "routing", "--from-literal=routing.json={}"))
    cluster.check(cluster.kubectl("create", "secret", "generic", "keys", "--from-literal=api-keys=hashed",
                                  "--from-literal=api-key=plain"))
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": cluster.namespace},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web:1"}],
                     "volumes": [{"name": "routing", "configMap": {"name": "routing"}},
                                 {"name": "keys", "secret": {"secretName": "keys", "defaultMode": 0o440,
                                                             "items": [{"key": "api-keys", "path": "api-keys"}]}}]}}}}
    cluster.apply(deployment)
    read, get_deployment = api_reader(cluster.kubeconfig, cluster.namespace)
    spec = get_deployment("web")["spec"]["template"]["spec"]
    sync = KubeletSync(read, pod_projections(spec, "web", tmp_path))
    assert len(sync.sync_once()) == 2
    volumes = tmp_path / "web" / "volumes"
    assert (volumes / "keys" / "api-keys").read_bytes() == b"hashed" and not (volumes / "keys" / "api-key").exists()
    assert (volumes / "routing" / "routing.json").read_text() == "{}"
    cluster.check(cluster.kubectl("patch", "configmap", "routing", "--type", "merge",
                                  "-p", json.dumps({"data": {"routing.json": '{"generation": 2}'}})))
    wait_for(lambda: sync.sync_once() or (volumes / "routing" / "routing.json").read_text() != "{}", 10,
             "the patched ConfigMap to be projected")
    assert json.loads((volumes / "routing" / "routing.json").read_text()) == {"generation": 2}
