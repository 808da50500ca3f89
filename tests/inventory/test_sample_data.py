"""The committed sample data: what generate.py writes, and loads cleanly."""
from __future__ import annotations

import importlib.util
from collections import Counter

from .conftest import SAMPLE_DIR


def _generator():
    spec = importlib.util.spec_from_file_location("maple_sample_generate", SAMPLE_DIR / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_files_are_what_the_script_writes():
    files = _generator().generate()
    for name, text in files.items():
        committed = (SAMPLE_DIR / name).read_text(encoding="utf-8")
        assert committed == text, f"{name} is stale: run python rules/data/generate.py"


def test_sample_data_loads_without_errors(sample_result):
    report, data = sample_result.report, sample_result.data
    assert report.ok, report.render()
    assert len(data.stores) >= 300
    assert {s.city for s in data.stores.values()} >= {"London", "Manchester", "Berlin", "Paris",
                                                      "Amsterdam", "New York"}
    assert report.rows["inventory.csv"] > 10_000


def test_sample_sizes_and_categories(sample_result):
    catalog = sample_result.data.catalog.values()
    assert {i.category for i in catalog} == {
        "running-shoes", "trail-shoes", "sneakers", "boots", "tops", "t-shirts", "hoodies", "jeans",
        "dresses", "jackets", "socks", "coffee-beans", "coffee-gear", "gift-cards"}
    sizes = {i.category: set() for i in catalog}
    for i in catalog:
        sizes[i.category].update(i.sizes)
    assert sizes["running-shoes"] == {str(n) for n in range(36, 48)}
    assert sizes["hoodies"] == {"XS", "S", "M", "L", "XL", "XXL"}
    assert sizes["coffee-beans"] == sizes["gift-cards"] == {"one-size"}


def test_sample_stock_is_mostly_zeros_and_low_counts(sample_result):
    counts = Counter(item.quantity for item in sample_result.data.items())
    total = sum(counts.values())
    assert 0.25 < counts[0] / total < 0.5
    assert (counts[1] + counts[2] + counts[3]) / total > 0.3
