"""Cost data: FOCUS deliveries imported into cost records, superseding earlier deliveries."""

from models.costs.importer import run_import
from models.costs.intake import PartTooLarge, import_costs, register_delivery, store_parts
from models.costs.queries import CostQuery, billed_totals, filter_costs, is_invoiced, visible_costs, visible_imports
from models.costs.records import CostDeliveryScope, CostImport, CostImportState, CostOrigin, CostRecord, LateCost
from models.costs.reports import (
    AccountMonthTotal,
    ImportReport,
    LateCostEntry,
    ScopeOutcome,
    UnmatchedSubAccount,
)
from models.costs.totals import CostTotal

__all__ = [
    "AccountMonthTotal",
    "CostDeliveryScope",
    "CostImport",
    "CostImportState",
    "CostOrigin",
    "CostQuery",
    "CostRecord",
    "CostTotal",
    "ImportReport",
    "LateCost",
    "LateCostEntry",
    "PartTooLarge",
    "ScopeOutcome",
    "store_parts",
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
