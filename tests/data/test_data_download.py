"""Downloads against a local HTTP server on 127.0.0.1: success, checks, broken transfers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from flowllm_kit.data import (
    DatasetSpec,
    DownloadError,
    DownloadMismatchError,
    FileCheck,
    Source,
    download_file,
    load_dataset,
    load_dataset_report,
    registry,
)
from flowllm_kit.data.paths import URL_ENV

NAME = "tiny_set"


@pytest.fixture
def tiny_csv(mp20_head: pd.DataFrame) -> bytes:
    """A small CSV in the original CDVAE layout (index column first): 8 MP-20 rows."""
    return mp20_head.iloc[:8].to_csv(index=True).encode()


def _register(monkeypatch: pytest.MonkeyPatch, *sources: Source) -> None:
    monkeypatch.setitem(registry._registry, NAME, DatasetSpec(name=NAME, sources=sources))


def _check(body: bytes) -> FileCheck:
    return FileCheck(size=len(body), sha256=hashlib.sha256(body).hexdigest())


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_into_cache_then_reuse(
    file_server, tiny_csv: bytes, monkeypatch: pytest.MonkeyPatch, isolated_environment: Path
) -> None:
    file_server.files[f"/{NAME}/val.csv"] = tiny_csv
    _register(monkeypatch, Source(f"{file_server.url}/{NAME}", {"val": _check(tiny_csv)}))

    result = load_dataset_report(NAME, "val", progress=False, workers=1)
    assert result.source == isolated_environment / NAME / "val.csv"
    assert result.source.read_bytes() == tiny_csv
    assert len(result.crystals) == 8
    assert _leftovers(result.source.parent) == ["val.csv"]  # no temporary files left

    again = load_dataset(NAME, "val", progress=False)
    assert len(again) == 8
    assert file_server.requests == [f"/{NAME}/val.csv"]  # downloaded once


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "no-length"])
@pytest.mark.parametrize("wrong", ["too-big", "too-small", "sha256"])
def test_mismatch_is_an_error_and_leaves_nothing(
    wrong: str, announced: bool, file_server, tiny_csv: bytes, tmp_path: Path
) -> None:
    url = f"{file_server.url}/{NAME}/val.csv"
    file_server.files[f"/{NAME}/val.csv"] = tiny_csv
    if not announced:
        file_server.unsized.add(f"/{NAME}/val.csv")
    good = _check(tiny_csv)
    expected = {
        "too-big": FileCheck(size=len(tiny_csv) + 1, sha256=good.sha256),
        "too-small": FileCheck(size=len(tiny_csv) // 2),
        "sha256": FileCheck(size=good.size, sha256="0" * 64),
    }[wrong]
    destination = tmp_path / "downloads" / "val.csv"
    with pytest.raises(DownloadMismatchError) as raised:
        download_file(url, destination, expected=expected, progress=False)
    message = str(raised.value)
    assert url in message
    if wrong == "sha256":
        assert f"sha256 mismatch for {url}: expected {'0' * 64}, got {good.sha256}" in message
    else:
        assert f"size mismatch for {url}: expected {expected.size} bytes, got " in message
    if wrong == "too-big":
        assert f"got {len(tiny_csv)} bytes" in message
    assert _leftovers(destination.parent) == []


def test_download_without_content_length(file_server, tiny_csv: bytes, tmp_path: Path) -> None:
    file_server.files["/plain.csv"] = tiny_csv
    file_server.unsized.add("/plain.csv")
    path = download_file(
        f"{file_server.url}/plain.csv", tmp_path / "plain.csv", expected=_check(tiny_csv)
    )
    assert path.read_bytes() == tiny_csv


def test_mismatch_through_load_dataset_is_not_hidden(
    file_server, tiny_csv: bytes, monkeypatch: pytest.MonkeyPatch, isolated_environment: Path
) -> None:
    file_server.files[f"/{NAME}/val.csv"] = tiny_csv
    _register(monkeypatch, Source(f"{file_server.url}/{NAME}", {"val": FileCheck(size=1)}))
    with pytest.raises(DownloadMismatchError, match="expected 1 bytes"):
        load_dataset(NAME, "val", progress=False)
    assert _leftovers(isolated_environment / NAME) == []


def test_interrupted_download_leaves_no_file(
    file_server, tiny_csv: bytes, monkeypatch: pytest.MonkeyPatch, isolated_environment: Path
) -> None:
    path = f"/{NAME}/val.csv"
    file_server.files[path] = tiny_csv
    file_server.truncate[path] = len(tiny_csv) // 3  # announces the full length, then closes
    with pytest.raises(DownloadError, match="broke off") as raised:
        download_file(file_server.url + path, isolated_environment / "direct.csv", progress=False)
    assert not isinstance(raised.value, DownloadMismatchError)
    assert _leftovers(isolated_environment) == []

    _register(monkeypatch, Source(f"{file_server.url}/{NAME}"))  # no size known: still caught
    with pytest.raises(FileNotFoundError, match="broke off"):
        load_dataset(NAME, "val", progress=False)
    assert _leftovers(isolated_environment / NAME) == []


def test_fallback_source_and_mirror_variable(
    file_server,
    tiny_csv: bytes,
    monkeypatch: pytest.MonkeyPatch,
    closed_port_url: str,
    isolated_environment: Path,
) -> None:
    file_server.files[f"/fallback/{NAME}/test.csv"] = tiny_csv
    file_server.files[f"/mirror/{NAME}/val.csv"] = tiny_csv
    _register(
        monkeypatch,
        Source(f"{closed_port_url}/{NAME}", {"val": _check(tiny_csv)}),  # unreachable
        Source(f"{file_server.url}/missing/{NAME}"),  # 404
        Source(f"{file_server.url}/fallback/{NAME}"),
    )
    assert len(load_dataset(NAME, "test", progress=False, workers=1)) == 8

    # The mirror is tried first and held to the canonical source's checks.
    monkeypatch.setenv(URL_ENV, f"{file_server.url}/mirror")
    assert len(load_dataset(NAME, "val", progress=False, workers=1)) == 8
    assert file_server.requests[-1] == f"/mirror/{NAME}/val.csv"
