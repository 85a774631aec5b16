"""Every reference to the kit's documents resolves: the file is in the repository's docs/ and the
section (``docs/METHOD.md §9``) is one of its numbered headings."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"docs/([A-Z_]+\.md)(?: §(\d+))?")
# Names of documents that live outside the repository, which a user never sees.
OUTSIDE = re.compile(r"REFERENCE §|REFERENCE\.md|DESIGN\.md|STYLE\.md|shared/docs")


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    suffixes = {".py", ".ipynb", ".md", ".toml", ".cfg", ".sh", ".yml"}
    return [REPO / name for name in listed if Path(name).suffix in suffixes]


def _sections(document: Path) -> set[str]:
    return set(re.findall(r"^## (\d+)\.", document.read_text(encoding="utf-8"), re.MULTILINE))


def test_every_document_reference_resolves() -> None:
    files = _tracked_text_files()
    assert files, "run from a git checkout"
    found = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        for name, section in REFERENCE.findall(text):
            document = REPO / "docs" / name
            assert document.is_file(), f"{path.relative_to(REPO)} cites missing docs/{name}"
            if section:
                assert section in _sections(document), (
                    f"{path.relative_to(REPO)} cites docs/{name} §{section}: no such section"
                )
            found += 1
    assert found >= 20  # the code cites the method document throughout


def test_no_file_cites_a_document_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    offenders = [
        str(path.relative_to(REPO))
        for path in _tracked_text_files()
        if path != this and OUTSIDE.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
