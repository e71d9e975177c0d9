"""frontend.reloader: reload on change, keep the last good value, count each bad version once."""

from __future__ import annotations

import json
import os
import threading

from frontend.errors import ConfigError
from frontend.reloader import ReloadingFile

from tests.frontend.helpers import write_json_atomically


def parse(data: bytes) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        raise ConfigError("bad json") from None
    if not isinstance(value, dict):
        raise ConfigError("not an object")
    return value


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_reload_on_change_keep_last_good_and_count_errors_once(tmp_path):
    path = tmp_path / "routing.json"
    write_json_atomically(path, {"generation": 1})
    errors, loads, clock = [], [], Clock()
    watched = ReloadingFile(str(path), parse, check_interval_s=1.0, on_load=loads.append, on_error=errors.append,
                            clock=clock)
    assert watched.get() == {"generation": 1}

    write_json_atomically(path, {"generation": 2})
    assert watched.get() == {"generation": 1}  # the check interval has not passed: no stat at all
    clock.now = 1.5
    assert watched.get() == {"generation": 2}

    path.write_text("{ half written")
    clock.now = 3.0
    assert watched.get() == {"generation": 2} and len(errors) == 1
    clock.now = 5.0
    assert watched.get() == {"generation": 2} and len(errors) == 1  # same bad file: not counted again
    assert "bad json" in watched.last_error

    os.remove(path)
    clock.now = 7.0
    assert watched.get() == {"generation": 2} and len(errors) == 2

    write_json_atomically(path, {"generation": 3})
    clock.now = 9.0
    assert watched.get() == {"generation": 3} and watched.last_error is None
    assert [v["generation"] for v in loads] == [1, 2, 3]


def test_missing_file_at_start_gives_none_and_one_error(tmp_path):
    errors = []
    watched = ReloadingFile(str(tmp_path / "absent.json"), parse, check_interval_s=0.0, on_error=errors.append)
    assert watched.get() is None and watched.get() is None
    assert len(errors) == 1


def test_kubernetes_style_symlink_swap_is_seen(tmp_path):
    # kubelet: ..data -> ..2024_x/ ; routing.json -> ..data/routing.json ; an update re-points ..data.
    first, second = tmp_path / "..v1", tmp_path / "..v2"
    first.mkdir()
    second.mkdir()
    (first / "routing.json").write_text('{"generation": 1}')
    (second / "routing.json").write_text('{"generation": 2}')
    os.symlink(first.name, tmp_path / "..data")
    os.symlink("..data/routing.json", tmp_path / "routing.json")
    watched = ReloadingFile(str(tmp_path / "routing.json"), parse, check_interval_s=0.0)
    assert watched.get() == {"generation": 1}
    os.symlink(second.name, tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert watched.get() == {"generation": 2}


class Gate:
    """A `prepare` that records what it was given and holds each call until released."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.release = {}

    def __call__(self, value: dict) -> None:
        self.calls.append(value)
        event = self.release.setdefault(value["generation"], threading.Event())
        assert event.wait(10), "test never released the preparation"
        if value.get("fail"):
            raise RuntimeError("cannot warm up")

    def open(self, generation: int) -> None:
        self.release.setdefault(generation, threading.Event()).set()


def test_prepare_runs_inline_at_start_then_in_the_background_while_readers_keep_the_old_value(tmp_path):
    path = tmp_path / "routing.json"
    write_json_atomically(path, {"generation": 1})
    gate, loads, clock = Gate(), [], Clock()
    gate.open(1)
    watched = ReloadingFile(str(path), parse, check_interval_s=1.0, on_load=loads.append, prepare=gate, clock=clock)
    assert watched.value == {"generation": 1} and gate.calls == [{"generation": 1}]  # ready before first use

    write_json_atomically(path, {"generation": 2})
    clock.now = 1.5
    assert watched.get() == {"generation": 1}  # generation 2 is being prepared: nobody is routed to it yet
    assert watched.preparing is not None and watched.preparing.is_alive()
    clock.now = 3.0
    assert watched.get() == {"generation": 1} and len(gate.calls) == 2  # same file: not prepared twice
    gate.open(2)
    watched.preparing.join(10)
    assert watched.get() == {"generation": 2} and [v["generation"] for v in loads] == [1, 2]


def test_a_newer_file_read_during_a_preparation_wins(tmp_path):
    path = tmp_path / "routing.json"
    write_json_atomically(path, {"generation": 1})
    gate, clock = Gate(), Clock()
    gate.open(1)
    watched = ReloadingFile(str(path), parse, check_interval_s=1.0, prepare=gate, clock=clock)
    write_json_atomically(path, {"generation": 2})
    clock.now = 2.0
    watched.get()
    older = watched.preparing
    write_json_atomically(path, {"generation": 3})
    clock.now = 4.0
    watched.get()
    newer = watched.preparing
    gate.open(3)
    newer.join(10)
    assert watched.get() == {"generation": 3}
    gate.open(2)  # the older preparation ends last: it must not put generation 2 back
    older.join(10)
    assert watched.get() == {"generation": 3}


def test_a_failed_preparation_still_adopts_the_configured_value(tmp_path, caplog):
    path = tmp_path / "routing.json"
    write_json_atomically(path, {"generation": 1})
    gate, clock = Gate(), Clock()
    gate.open(1)
    watched = ReloadingFile(str(path), parse, check_interval_s=1.0, prepare=gate, clock=clock)
    write_json_atomically(path, {"generation": 2, "fail": True})
    clock.now = 2.0
    gate.open(2)
    watched.get()
    watched.preparing.join(10)
    assert watched.get() == {"generation": 2, "fail": True}
    assert "preparing" in caplog.text and "using it anyway" in caplog.text
