"""Stores, stock and the nearby-store query (docs/inventory.md).

    model.py         Store, CatalogItem, StockItem, StoreAvailability, InventoryData
    loader.py        stores.csv, catalog.csv, inventory.csv -> InventoryData + errors
    geo.py           GeoIndex: stores within R km, exactly what a linear scan finds
    location.py      locate(): request location, else the request's store, else preferred store, else home
    availability.py  Inventory: live updates (atomic batches), reload, nearby()
"""
from .availability import Inventory, NearbyAnswer, Snapshot, StockUpdate, UpdateError, UpdateResult
from .geo import GeoIndex, linear_scan
from .loader import DataError, InventoryLoadError, LoadReport, load_dir
from .location import Location, locate
from .model import CatalogItem, InventoryData, OpeningHours, StockItem, Store, StoreAvailability

__all__ = [
    "CatalogItem", "DataError", "GeoIndex", "Inventory", "InventoryData", "InventoryLoadError",
    "LoadReport", "Location", "NearbyAnswer", "OpeningHours", "Snapshot", "StockItem", "StockUpdate",
    "Store", "StoreAvailability", "UpdateError", "UpdateResult", "linear_scan", "load_dir", "locate",
]
