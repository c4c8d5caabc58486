"""Xero: the connection (OAuth 2.0 with PKCE, tokens encrypted at rest), the account mapping,
the push state of each document, and the payments brought back."""

from models.xero.tables import (
    ConnectionStatus,
    DocumentKind,
    SyncState,
    XeroAccountMapping,
    XeroAuthorization,
    XeroConnection,
    XeroPayment,
    XeroSettings,
    XeroSync,
)

__all__ = [
    "ConnectionStatus", "DocumentKind", "SyncState", "XeroAccountMapping", "XeroAuthorization", "XeroConnection",
    "XeroPayment", "XeroSettings", "XeroSync",
]
