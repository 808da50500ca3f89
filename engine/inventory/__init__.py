"""Stores, stock and the nearby-store query (docs/inventory.md).

    model.py         Store, CatalogItem, StockItem, StoreAvailability, InventoryData
    loader.py        stores.csv, catalog.csv, inventory.csv -> InventoryData + errors
"""
from .loader import DataError, InventoryLoadError, LoadReport, load_dir
from .model import CatalogItem, InventoryData, OpeningHours, StockItem, Store, StoreAvailability

__all__ = [
    "CatalogItem", "DataError", "InventoryData", "InventoryLoadError", "LoadReport", "OpeningHours",
    "StockItem", "Store", "StoreAvailability", "load_dir",
]
