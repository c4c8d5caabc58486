"""ISO 4217 currencies and their minor units, and the one rounding rule of the product:
half-up to the currency's minor unit."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from models.errors import ValidationFailed

# Active ISO 4217 codes with a minor unit other than 2; every other listed code has 2.
_MINOR_UNITS_NOT_2 = {
    "BHD": 3, "BIF": 0, "CLF": 4, "CLP": 0, "DJF": 0, "GNF": 0, "IQD": 3, "ISK": 0, "JOD": 3,
    "JPY": 0, "KMF": 0, "KRW": 0, "KWD": 3, "LYD": 3, "OMR": 3, "PYG": 0, "RWF": 0, "TND": 3,
    "UGX": 0, "UYI": 0, "UYW": 4, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}
_TWO_DECIMALS = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD "
    "FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD "
    "KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD "
    "NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
    "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UZS VED VES "
    "WST XCD XCG YER ZAR ZMW ZWG"
).split()
MINOR_UNITS: dict[str, int] = {**{code: 2 for code in _TWO_DECIMALS}, **_MINOR_UNITS_NOT_2}
# The smallest amount of each currency (0.01 USD, 1 JPY).
_QUANTA = {code: Decimal(1).scaleb(-units) for code, units in MINOR_UNITS.items()}


def check_currency(code: str, field: str = "currency") -> str:
    code = code.strip().upper()
    if code not in MINOR_UNITS:
        raise ValidationFailed(f"'{code}' is not an ISO 4217 currency code.", field=field)
    return code


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Half-up to the currency's minor unit: 0.005 USD -> 0.01, 0.5 JPY -> 1."""
    return amount.quantize(_QUANTA[currency], rounding=ROUND_HALF_UP)
