"""E-invoices (EN 16931): the identifiers parties need, the document built from a frozen
revision, and its Cross Industry Invoice (Factur-X) and UBL (Peppol BIS Billing 3.0) XML."""
