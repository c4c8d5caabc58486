"""Cost data: FOCUS exports imported into cost records."""

from models.costs.records import CostImport, CostRecord

__all__ = ["CostImport", "CostRecord"]
