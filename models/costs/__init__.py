"""Cost data: FOCUS deliveries imported into cost records, superseding earlier deliveries."""

from models.costs.focus import CostFileRejected
from models.costs.importer import import_costs, register_delivery, run_import
from models.costs.queries import CostQuery, billed_totals, filter_costs, is_invoiced, visible_costs, visible_imports
from models.costs.records import CostDeliveryScope, CostImport, CostImportState, CostOrigin, CostRecord, LateCost
from models.costs.reports import (
    AccountMonthTotal,
    ImportReport,
    LateCostEntry,
    ScopeOutcome,
    UnmatchedSubAccount,
)

__all__ = [
    "AccountMonthTotal",
    "CostDeliveryScope",
    "CostFileRejected",
    "CostImport",
    "CostImportState",
    "CostOrigin",
    "CostQuery",
    "CostRecord",
    "ImportReport",
    "LateCost",
    "LateCostEntry",
    "ScopeOutcome",
    "UnmatchedSubAccount",
    "billed_totals",
    "filter_costs",
    "import_costs",
    "is_invoiced",
    "register_delivery",
    "run_import",
    "visible_costs",
    "visible_imports",
]
