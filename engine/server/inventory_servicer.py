"""InventoryService: live stock changes and data reloads (served on the
admin port).  Translates between protobuf and engine.service.inventory."""
from __future__ import annotations

import grpc

from ..inventory.availability import StockUpdate
from ..service.errors import ServiceError
from ..service.inventory import InventoryHolder, InventoryInfo, reload_logged
from .pb.maple.v1 import inventory_pb2 as ipb
from .status import abort as abort_with

INVENTORY_SERVICE = ipb.DESCRIPTOR.services_by_name["InventoryService"].full_name


def updates_from_pb(request: ipb.UpdateInventoryRequest) -> list[StockUpdate]:
    return [StockUpdate(c.store_id, c.sku, c.size,
                        quantity=c.quantity if c.HasField("quantity") else None,
                        delta=c.delta if c.HasField("delta") else None) for c in request.changes]


def result_to_pb(result) -> ipb.UpdateInventoryResponse:
    out = ipb.UpdateInventoryResponse(applied=result.applied, clamped=list(result.clamped),
                                      inventory_version=result.version)
    for e in result.errors:
        out.errors.add(index=e.index, field=f"changes[{e.index}].{e.field}", message=e.message)
    return out


def info_to_pb(info: InventoryInfo) -> ipb.GetInventoryResponse:
    return ipb.GetInventoryResponse(directory=info.directory, stores=info.stores, skus=info.skus,
                                    stock_rows=info.stock_rows, inventory_version=info.version,
                                    loaded_at=info.loaded_at)


class InventoryServicer:
    """``apply`` and ``reload`` default to this process's holder; the
    multi-worker supervisor passes functions that fan out to every worker."""

    def __init__(self, holder: InventoryHolder, apply=None, reload=None):
        self.holder = holder
        self._apply = apply or holder.update
        self._reload = reload or holder.reload

    def UpdateInventory(self, request, context):
        try:
            return result_to_pb(self._apply(updates_from_pb(request)))
        except ServiceError as err:
            abort_with(context, err)

    def ReloadInventory(self, request, context):
        try:
            summary = reload_logged(self.holder, self._reload, "ReloadInventory")
        except ServiceError as err:
            abort_with(context, err)
        info = summary.info
        return ipb.ReloadInventoryResponse(stores=info.stores, skus=info.skus, stock_rows=info.stock_rows,
                                           problems=list(summary.problems), inventory_version=info.version)

    def GetInventory(self, request, context):
        return info_to_pb(self.holder.info())


def inventory_handler(servicer: InventoryServicer, recorder=None) -> grpc.GenericRpcHandler:
    from .app import raw_unary
    methods = [("UpdateInventory", ipb.UpdateInventoryRequest, ipb.UpdateInventoryResponse),
               ("ReloadInventory", ipb.ReloadInventoryRequest, ipb.ReloadInventoryResponse),
               ("GetInventory", ipb.GetInventoryRequest, ipb.GetInventoryResponse)]
    return grpc.method_handlers_generic_handler(INVENTORY_SERVICE, {
        name: raw_unary(name, req, resp, getattr(servicer, name), recorder) for name, req, resp in methods})
