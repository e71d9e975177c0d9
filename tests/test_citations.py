"""Every file of the repository that a document, comment or docstring cites exists (docs/CONTRACTS.md).

Citations of files outside the repository were the problem this guards against: a reader was sent to contracts
nobody could open. Three kinds of citation are checked in every tracked text file:
- a path that starts with one of the repository's top-level directories (`docs/`, `services/`, `tests/`, ...);
- a bare document name ending in `.md` (found beside the citing file, at the root or in docs/);
- a relative link target in a Markdown file.
Paths with a placeholder in them (`<model>`, `{model}`, `*`, `$VAR`) name a pattern, not a file, and are skipped;
generated directories (build/, models/, data/) are not tracked, so paths into them are not citations of the repo.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".tpl", ".txt", ".toml", ".mk", ".sh", ".cfg", ".env", ".json",
                 ".js", ".html", ".css", ".gitignore", ".dockerignore"}
TEXT_NAMES = {"Makefile", "Dockerfile", "run"}
PLACEHOLDER = re.compile(r"[<>{}*$]")
BARE_DOC = re.compile(r"(?<![\w./-])([A-Za-z0-9_-]+\.md)\b")
MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


@cache
def tracked_files() -> tuple[str, ...]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
    return tuple(p for p in out.stdout.decode().split("\0") if p)


def text_files() -> list[str]:
    """Tracked text files, less this one: its examples cite missing files on purpose."""
    here = Path(__file__).resolve().relative_to(REPO_ROOT).as_posix()
    return [p for p in tracked_files()
            if (Path(p).suffix in TEXT_SUFFIXES or Path(p).name in TEXT_NAMES) and p != here]


def top_level_dirs() -> list[str]:
    return sorted({p.split("/", 1)[0] for p in tracked_files() if "/" in p})


def repo_path_pattern() -> re.Pattern[str]:
    """A path that starts with a top-level directory: `tests/x.py`, `docs/`, `charts/mnist-platform/crds/`."""
    tops = "|".join(re.escape(t) for t in top_level_dirs())
    return re.compile(rf"(?<![\w./~-])((?:{tops})/[A-Za-z0-9_.@/+-]*)")


def exists(path: str, cited_from: Path) -> bool:
    return (REPO_ROOT / path).exists() or (cited_from.parent / path).exists()


def cited_paths(text: str, pattern: re.Pattern[str], markdown: bool = True) -> list[tuple[int, str]]:
    """(line number, path) of every citation of a repository file in text (link targets only in Markdown)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for m in pattern.finditer(line):
            path = m.group(1).rstrip(".,:;")
            following = line[m.end():m.end() + 1]
            if PLACEHOLDER.search(path) or (following and PLACEHOLDER.match(following)):
                continue
            # A path is a citation when it names a file (has a suffix) or a directory (ends with '/');
            # words joined by slashes in prose ("operator/frontend/TF Serving") are neither.
            if path.endswith("/") or "." in path.rsplit("/", 1)[-1]:
                found.append((number, path))
        for m in BARE_DOC.finditer(line):
            found.append((number, m.group(1)))
        for m in MD_LINK.finditer(line) if markdown else ():
            target = m.group(1)
            if "://" not in target and not target.startswith("mailto:") and not PLACEHOLDER.search(target):
                found.append((number, target))
    return found


def missing_citations(text: str, cited_from: Path, pattern: re.Pattern[str]) -> list[tuple[int, str]]:
    """The citations in text (of the file cited_from) that name no file of the repository."""
    missing = []
    for number, cited in cited_paths(text, pattern, markdown=cited_from.suffix == ".md"):
        candidates = [cited] if "/" in cited else [cited, f"docs/{cited}"]
        if not any(exists(c, cited_from) for c in candidates):
            missing.append((number, cited))
    return missing


def test_every_cited_repository_file_exists():
    pattern = repo_path_pattern()
    missing = []
    for relative in text_files():
        try:
            text = (REPO_ROOT / relative).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # binary, or deleted in the working tree and not yet committed
        missing += [f"{relative}:{n}: {cited}" for n, cited in missing_citations(text, REPO_ROOT / relative, pattern)]
    assert not missing, "citations of files that are not in the repository:\n" + "\n".join(missing)


@pytest.mark.parametrize("text, cited", [
    ("see docs/CONTRACTS.md for the schema", ["docs/CONTRACTS.md"]),
    ("the tests in tests/operator/ check it", ["tests/operator/"]),
    ("as NOWHERE.md says", ["NOWHERE.md"]),
    ("[the API](API.md#errors)", ["API.md", "API.md"]),
    ("operator/frontend/TF Serving as processes", []),
    ("services/<name>/Dockerfile and charts/{x}/values.yaml", []),
])
def test_what_counts_as_a_citation(text, cited):
    """Real citations are seen, whatever their form; patterns and slash-joined words in prose are not citations."""
    assert [c for _, c in cited_paths(text, repo_path_pattern())] == cited


def test_a_cited_file_that_does_not_exist_is_reported_and_one_that_does_is_not():
    text = "The contract is in NOWHERE.md;\nsee docs/CONTRACTS.md and tests/nowhere.md,\nand [x](../docs/API.md)."
    assert missing_citations(text, REPO_ROOT / "docs" / "X.md", repo_path_pattern()) == [
        (1, "NOWHERE.md"), (2, "tests/nowhere.md")]
