"""Stores, stock and the nearby-store query (docs/inventory.md).

    model.py         Store, CatalogItem, StockItem, StoreAvailability, InventoryData
    loader.py        stores.csv, catalog.csv, inventory.csv -> InventoryData + errors
    geo.py           GeoIndex: stores within R km, exactly what a linear scan finds
"""
from .geo import GeoIndex, linear_scan
from .loader import DataError, InventoryLoadError, LoadReport, load_dir
from .model import CatalogItem, InventoryData, OpeningHours, StockItem, Store, StoreAvailability

__all__ = [
    "CatalogItem", "DataError", "GeoIndex", "InventoryData", "InventoryLoadError", "LoadReport",
    "OpeningHours", "StockItem", "Store", "StoreAvailability", "linear_scan", "load_dir",
]
