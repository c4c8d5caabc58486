"""Generation of an invoice's revision in four steps, each a module: `inputs` reads the
invoices' contexts and what computing them needs, `compute` turns those into a
`ComputedRevision` (lines, rules, charges, rates: the order is written down there), `view`
makes the printed view, and `store` freezes it as the invoice's next revision. Their shared
types are in `types` (which e-invoicing reads too). The job (`jobs/generate.py`) runs the
steps for a batch, numbering and printing between view and store."""
