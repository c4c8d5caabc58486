"""Cost data: FOCUS exports imported into cost records."""

from models.costs.focus import CostFileRejected
from models.costs.importer import AccountMonthTotal, ImportReport, UnmatchedSubAccount, import_costs
from models.costs.queries import billed_totals, visible_costs
from models.costs.records import CostImport, CostOrigin, CostRecord

__all__ = [
    "AccountMonthTotal",
    "CostFileRejected",
    "CostImport",
    "CostOrigin",
    "CostRecord",
    "ImportReport",
    "UnmatchedSubAccount",
    "import_costs",
    "billed_totals",
    "visible_costs",
]
