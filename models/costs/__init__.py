"""Cost data: FOCUS exports imported into cost records."""

from models.costs.focus import CostFileRejected
from models.costs.importer import AccountMonthTotal, ImportReport, UnmatchedSubAccount, import_costs
from models.costs.queries import CostQuery, billed_totals, filter_costs, visible_costs
from models.costs.records import CostImport, CostOrigin, CostRecord

__all__ = [
    "AccountMonthTotal",
    "CostFileRejected",
    "CostImport",
    "CostOrigin",
    "CostQuery",
    "CostRecord",
    "ImportReport",
    "UnmatchedSubAccount",
    "import_costs",
    "billed_totals",
    "filter_costs",
    "visible_costs",
]
