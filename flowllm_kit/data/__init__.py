"""Benchmark crystal datasets: find or download the CSVs, parse them once, cache the result.

Typical use::

    from flowllm_kit.data import load_dataset

    crystals = load_dataset("mp_20", "val")               # list[Crystal], Niggli-reduced
    subset = load_dataset("mp_20_subset", "train", root="/path/to/data")

Where files are looked for, and the environment variables ``FLOWLLM_KIT_DATA``,
``FLOWLLM_KIT_CACHE`` and ``FLOWLLM_KIT_DATA_URL``, are described in
:mod:`flowllm_kit.data.paths`; the registered datasets and their download sources in
:mod:`flowllm_kit.data.registry`.
"""

from __future__ import annotations

from flowllm_kit.data.download import DownloadError, DownloadMismatchError, download_file
from flowllm_kit.data.fetch import fetch_dataset, locate_csv
from flowllm_kit.data.load import (
    LoadResult,
    SkippedRow,
    SkippedRowsWarning,
    load_dataset,
    load_dataset_report,
)
from flowllm_kit.data.paths import cache_dir
from flowllm_kit.data.registry import (
    DATASETS,
    DatasetSpec,
    FileCheck,
    Source,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "DownloadError",
    "DownloadMismatchError",
    "FileCheck",
    "LoadResult",
    "SkippedRow",
    "SkippedRowsWarning",
    "Source",
    "cache_dir",
    "download_file",
    "fetch_dataset",
    "load_dataset",
    "load_dataset_report",
    "locate_csv",
    "register_dataset",
]
