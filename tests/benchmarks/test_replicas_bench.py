"""benchmarks/replicas_bench.py's own logic: its last line (the issue's format) and its refusals of bad arguments.
The measurement itself (tests.support.serving_replicas.measure) runs in tests/frontend/test_replicas.py."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from tests.benchmarks import load_script
from tests.support.serving_replicas import Result


def test_last_line_has_the_issues_format():
    result = Result(replicas=3, requests=3000, shares={"a": 0.3333, "b": 0.3, "c": 0.3667}, failed=0,
                    failures=Counter(), added_first_request_s=3.46)
    assert result.line() == ("replicas 3: share min 30.0% max 36.7%; failed 0; "
                             "added replica first request after 3.5 s")
    assert dataclasses.replace(result, added_first_request_s=None).line().endswith("first request after never")


@pytest.mark.parametrize("argv", [["--replicas", "0"], ["--requests", "0"], ["--threads", "0"],
                                  ["--resolve-every", "0"], ["--transport", "http"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script("replicas_bench").main(argv)
    assert exit_info.value.code == 2 and "error:" in capsys.readouterr().err


def test_a_store_without_versions_is_refused_before_anything_starts(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load_script("replicas_bench").main(["--model-base-path", str(tmp_path)])
    assert "holds no version directory" in capsys.readouterr().err
