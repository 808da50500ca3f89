"""Fixtures for the inventory tests: the committed sample data, and small
hand-written data sets in a temporary directory."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.inventory import Inventory, load_dir

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = ROOT / "rules" / "data"

# Four London stores on a line going east from Riverside (51.5, -0.1), plus one in Paris.
STORES = """\
id,name,address,city,lat,lon,hours
s001,Riverside,1 High Street,London,51.5,-0.1,Mo-Sa 09:00-20:00; Su 11:00-17:00
s002,Bankside,"2, Park Lane",London,51.5,-0.09,Mo-Sa 09:00-20:00
s003,Borough,3 King Street,London,51.5,-0.08,Mo-Fr 08:00-19:00; Sa-Su closed
s004,Bermondsey,4 Mill Lane,London,51.5,-0.07,Mo-Su 00:00-24:00
s005,Marais,5 rue de la Paix,Paris,48.8566,2.3522,Mo-Sa 10:00-19:30
"""
CATALOG = """\
sku,name,category,sizes
RUN-001,Tempo Runner,running-shoes,40 41 42 43
TEE-001,Crew Tee,t-shirts,S M L
BNS-001,House Blend,coffee-beans,one-size
"""
INVENTORY = """\
store,sku,size,quantity
s001,RUN-001,42,1
s002,RUN-001,42,0
s003,RUN-001,42,4
s004,RUN-001,42,2
s005,RUN-001,42,9
s001,TEE-001,M,3
s003,BNS-001,one-size,12
"""


def write_data(directory: Path, stores: str = STORES, catalog: str = CATALOG,
               inventory: str = INVENTORY) -> Path:
    """Write the three files (None leaves one out) and return the directory."""
    for name, text in (("stores.csv", stores), ("catalog.csv", catalog), ("inventory.csv", inventory)):
        if text is not None:
            (directory / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return write_data(tmp_path)


@pytest.fixture
def small(data_dir: Path) -> Inventory:
    result = load_dir(data_dir)
    assert result.report.ok, result.report.render()
    return Inventory(result.data)


@pytest.fixture(scope="session")
def sample_result():
    return load_dir(SAMPLE_DIR)
