"""The identifiers EN 16931 asks of a seller and a buyer, checked when they are entered:
ISO 3166-1 country codes, VAT identifiers, Peppol electronic addresses (EAS scheme and id),
IBAN and BIC. Each check answers the cleaned value or raises ValidationFailed naming the
input field; an empty value clears the identifier."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError as StdnumError

from models.errors import ValidationFailed
from models.text import clean_text

# ISO 3166-1 alpha-2 (all 249 assigned codes).
COUNTRY_CODES = frozenset(
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ "
    "BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM "
    "DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS "
    "GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN "
    "KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ "
    "MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM "
    "PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV "
    "SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI "
    "VN VU WF WS YE YT ZA ZM ZW".split()
)
# A VAT identifier starts with its country's code; Greece uses EL and Northern Ireland XI
# (EN 16931 BR-CO-9).
VAT_PREFIXES = COUNTRY_CODES | {"EL", "XI"}
# The Electronic Address Scheme code list (CEF EAS) that EN 16931 and Peppol accept for
# BT-34 / BT-49, as the Factur-X 1.09 EN 16931 code lists give it.
EAS_SCHEMES = frozenset(
    "0002 0007 0009 0037 0060 0088 0096 0097 0106 0130 0135 0142 0147 0151 0154 0158 0170 0177 "
    "0183 0184 0188 0190 0191 0192 0193 0194 0195 0196 0198 0199 0200 0201 0202 0203 0204 0205 "
    "0208 0209 0210 0211 0212 0213 0215 0216 0217 0218 0221 0225 0230 0235 0240 0242 0244 0245 "
    "0246 0248 9910 9913 9914 9915 9918 9919 9920 9922 9923 9924 9925 9926 9927 9928 9929 9930 "
    "9931 9932 9933 9934 9935 9936 9937 9938 9939 9940 9941 9942 9943 9944 9945 9946 9947 9948 "
    "9949 9950 9951 9952 9953 9957 9959 AN AQ AS AU EM".split()
)
_VAT_ID = re.compile(r"^[A-Z]{2}[0-9A-Z+*.]{2,13}$")
_ENDPOINT_ID = re.compile(r"^[^\s]{1,255}$")


class VatCategory(str, Enum):
    """How VAT applies to what a billing profile invoices (UNTDID 5305 codes in e-invoices)."""

    STANDARD = "STANDARD"  # S: the profile's percentage tax is the VAT rate
    ZERO_RATED = "ZERO_RATED"  # Z
    EXEMPT = "EXEMPT"  # E: needs an exemption reason
    REVERSE_CHARGE = "REVERSE_CHARGE"  # AE: the buyer accounts for VAT; both VAT ids needed

    @property
    def code(self) -> str:
        return _CATEGORY_CODES[self]


_CATEGORY_CODES = {
    VatCategory.STANDARD: "S", VatCategory.ZERO_RATED: "Z", VatCategory.EXEMPT: "E",
    VatCategory.REVERSE_CHARGE: "AE",
}


def _upper(value: Any, field: str, limit: int) -> str:
    return re.sub(r"\s+", "", clean_text(value, field, limit, False)).upper()


def clean_country_code(value: Any, field: str) -> str:
    code = _upper(value, field, 64)
    if code and code not in COUNTRY_CODES:
        raise ValidationFailed(f"{code!r} is not an ISO 3166-1 alpha-2 country code (such as FR, DE, GB).", field=field)
    return code


def clean_vat_id(value: Any, field: str) -> str:
    """A VAT identifier with its country prefix (FR..., DE..., GB...); the check digits are
    verified for the EU member states."""
    vat_id = _upper(value, field, 64)
    if not vat_id:
        return ""
    if not _VAT_ID.match(vat_id) or vat_id[:2] not in VAT_PREFIXES:
        raise ValidationFailed(
            f"{vat_id!r} is not a VAT identifier: it starts with the country code (FR, DE, EL...) "
            "followed by 2 to 13 letters or digits.",
            field=field,
        )
    if vat_id[:2].lower() in eu_vat.MEMBER_STATES and not eu_vat.is_valid(vat_id):
        raise ValidationFailed(f"{vat_id!r} is not a valid {vat_id[:2]} VAT number (its check digits disagree).", field=field)
    return vat_id


def clean_legal_id(value: Any, field: str) -> str:
    return clean_text(value, field, 64, False)


def clean_eas_scheme(value: Any, field: str) -> str:
    scheme = _upper(value, field, 64)
    if scheme and scheme not in EAS_SCHEMES:
        raise ValidationFailed(
            f"{scheme!r} is not an Electronic Address Scheme code (such as 0088 for GLN, 9925 for a "
            "Belgian VAT number, 0009 for a SIRET, EM for an e-mail address).",
            field=field,
        )
    return scheme


def clean_endpoint_id(value: Any, field: str) -> str:
    endpoint = clean_text(value, field, 255, False)
    if endpoint and not _ENDPOINT_ID.match(endpoint):
        raise ValidationFailed("An electronic address contains no spaces.", field=field)
    return endpoint


def clean_iban(value: Any, field: str) -> str:
    iban = _upper(value, field, 64)
    if not iban:
        return ""
    try:
        return str(stdnum_iban.validate(iban))
    except StdnumError:
        raise ValidationFailed(f"{iban!r} is not a valid IBAN (country, length or check digits).", field=field) from None


def clean_bic(value: Any, field: str) -> str:
    code = _upper(value, field, 64)
    if not code:
        return ""
    try:
        return str(stdnum_bic.validate(code))
    except StdnumError:
        raise ValidationFailed(f"{code!r} is not a BIC (8 or 11 letters and digits).", field=field) from None


def check_endpoint_pair(scheme: str, endpoint: str, field: str) -> None:
    """An electronic address is its scheme and its id, both or neither."""
    if bool(scheme) != bool(endpoint):
        raise ValidationFailed(
            "An electronic address needs both its scheme (electronicAddressScheme) and its id (electronicAddress).",
            field=field,
        )
