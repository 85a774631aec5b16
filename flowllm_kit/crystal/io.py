"""Crystals on disk as JSON lines: appended one record at a time, so an interrupted run loses
at most the line it was writing, and read back tolerating that cut-off last line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flowllm_kit.crystal.crystal import Crystal
from flowllm_kit.distributed import shard_paths

__all__ = [
    "append_jsonl",
    "crystal_from_dict",
    "crystal_to_dict",
    "merge_crystal_shards",
    "read_crystals",
    "read_jsonl",
    "write_crystals",
]


def crystal_to_dict(crystal: Crystal) -> dict[str, Any]:
    """The crystal as plain JSON-serialisable values (id and properties included)."""
    record: dict[str, Any] = {
        "atomic_numbers": crystal.atomic_numbers.tolist(),
        "frac_coords": crystal.frac_coords.tolist(),
        "lengths": crystal.lengths.tolist(),
        "angles": crystal.angles.tolist(),
    }
    if crystal.id is not None:
        record["id"] = crystal.id
    if crystal.properties:
        record["properties"] = dict(crystal.properties)
    return record


def crystal_from_dict(data: Mapping[str, Any], *, id: str | None = None) -> Crystal:  # noqa: A002
    """Inverse of :func:`crystal_to_dict`; ``id`` overrides a stored id.

    Raises:
        ValueError: If a field is missing or malformed (the message names it).
    """
    missing = [k for k in ("atomic_numbers", "frac_coords", "lengths", "angles") if k not in data]
    if missing:
        raise ValueError(f"crystal record lacks {', '.join(missing)}: {sorted(data)}")
    return Crystal(
        atomic_numbers=data["atomic_numbers"],
        frac_coords=data["frac_coords"],
        lengths=data["lengths"],
        angles=data["angles"],
        id=id if id is not None else data.get("id"),
        properties=data.get("properties", {}),
    )


def append_jsonl(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Append JSON records, one per line, flushing after each, creating folders as needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
            out.flush()
    return path


def read_jsonl(path: str | Path, *, repair: bool = True) -> list[dict[str, Any]]:
    """All complete records of a JSON-lines file (``[]`` if it does not exist).

    A last line without its newline was cut off by an interruption: it is ignored and, with
    ``repair``, removed from the file so appending can resume cleanly.

    Raises:
        ValueError: If a complete line is not valid JSON (names the file and line number).
    """
    path = Path(path)
    if not path.is_file():
        return []
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]
    if repair and len(complete) != len(raw):
        path.write_bytes(complete)
    records = []
    for number, line in enumerate(complete.decode().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON record ({error.msg})") from error
    return records


def write_crystals(crystals: Iterable[Crystal], path: str | Path, *, append: bool = True) -> Path:
    """Write crystals as JSON lines (appending by default; ``append=False`` starts afresh)."""
    path = Path(path)
    if not append and path.exists():
        path.unlink()
    return append_jsonl((crystal_to_dict(c) for c in crystals), path)


def read_crystals(path: str | Path) -> list[Crystal]:
    """Crystals written by :func:`write_crystals` (records without a crystal are skipped)."""
    return [crystal_from_dict(r) for r in read_jsonl(path) if "atomic_numbers" in r]


def merge_crystal_shards(path: str | Path, ids: Sequence[str]) -> list[Crystal]:
    """Merge the per-process crystal files of ``path`` (``<stem>.rank-<r><suffix>``, see
    :func:`flowllm_kit.distributed.shard_path`) into ``path`` in the order of ``ids``, then
    delete them.

    Raises:
        ValueError: If ``ids`` repeats an id, or a crystal of ``ids`` is in no shard file.
    """
    if len(set(ids)) != len(ids):
        raise ValueError("merging shard files needs every crystal's id to be unique")
    shards = shard_paths(path)
    found = {c.id: c for shard in shards for c in read_crystals(shard)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValueError(
            f"{len(missing)} crystals (first {missing[0]!r}) are in no shard of {path}"
        )
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    merged = [found[i] for i in ids]
    write_crystals(merged, partial, append=False)
    partial.replace(path)
    for shard in shards:
        shard.unlink()
    return merged
