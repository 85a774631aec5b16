"""The registry of named datasets: canonical URLs, expected sizes, registering more."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowllm_kit.data import DATASETS, DatasetSpec, register_dataset, registry
from flowllm_kit.data.cache import file_sha256


def test_builtin_datasets_and_canonical_urls() -> None:
    assert {"mp_20", "mpts_52", "perov_5", "carbon_24"} <= set(DATASETS)
    for name, spec in DATASETS.items():
        assert spec.splits == ("train", "val", "test")
        canonical = spec.sources[0]
        assert canonical.url("train") == (
            f"https://raw.githubusercontent.com/jiaor17/DiffCSP/main/data/{name}/train.csv"
        )
        assert canonical.check("train").size is not None
    assert DATASETS["mp_20"].sources[0].check("val").size == 26_864_684
    assert DATASETS["mpts_52"].sources[0].check("test").size == 16_358_482
    assert (
        DATASETS["mp_20"]
        .sources[1]
        .url("test")
        .startswith("https://raw.githubusercontent.com/txie-93/cdvae/")
    )


@pytest.mark.parametrize("name", ["perov_5", "carbon_24"])
def test_cdvae_checks_match_the_shared_copies(name: str, data_root: Path) -> None:
    """The shared copies are byte-identical to txie-93/cdvae, whose checks we record."""
    cdvae = DATASETS[name].sources[1]
    for split in ("val", "test"):
        path = data_root / name / f"{split}.csv"
        assert cdvae.check(split).size == path.stat().st_size
        assert cdvae.check(split).sha256 == file_sha256(path)


def test_register_refuses_to_replace_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(DatasetSpec(name="mp_20"))
    register_dataset(DatasetSpec(name="mp_20", description="mirror"), replace=True)
    assert registry.get_dataset("mp_20").description == "mirror"
