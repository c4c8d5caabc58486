"""Shared model pieces: enums, mixins and the column types money and costs use."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, NamedTuple

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.queryset import QuerySet


class Scope(str, Enum):
    OWNER = "OWNER"
    VIEWER = "VIEWER"
    CUSTOMER = "CUSTOMER"


def enum_check(table: str, column: str, enum: type[Enum]) -> CheckConstraint:
    """The database refuses a value outside the enum, whoever writes it."""
    values = ", ".join(f"'{member.value}'" for member in enum)
    return CheckConstraint(check=f"{column} IN ({values})", name=f"{table}_{column}_valid")


def money(**kwargs: Any) -> fields.DecimalField:
    """An amount in a currency: rounded to the currency's minor unit (at most 4 places)."""
    return fields.DecimalField(max_digits=20, decimal_places=4, **kwargs)


def cost_decimal(**kwargs: Any) -> fields.DecimalField:
    """A cost or quantity exactly as a cloud provider exported it."""
    return fields.DecimalField(max_digits=38, decimal_places=16, **kwargs)


class _Built(NamedTuple):
    sql: str
    params: list[Any]
    # Where the varying value goes among the parameters.
    slot: int
    # How each row's columns make the row's instance and its related ones (`select_related`).
    related: Any


class Prepared:
    """A query of one shape that differs from call to call by one value, built by the ORM
    once per database dialect rather than on every call: for a statement every request runs
    (the token's lookup), whose building (three tables joined) cost as much CPU as its run.
    `build(value)` makes the query of `model`; it is built with a stand-in for the value, and runs with
    the value in its place, giving the same instances as the query itself."""

    _STAND_IN = "\x00prepared value"

    def __init__(self, model: Any, build: Callable[[Any], QuerySet]) -> None:
        self._model = model
        self._build = build
        self._built: dict[str, _Built] = {}

    def _built_for(self, dialect: str) -> _Built:
        built = self._built.get(dialect)
        if built is None:
            query = self._build(self._STAND_IN)
            query.sql()  # builds it
            sql, params = query.query.get_parameterized_sql()
            assert params.count(self._STAND_IN) == 1, "the value is one parameter of the query"
            built = self._built[dialect] = _Built(sql, params, params.index(self._STAND_IN), query._select_related_idx)
        return built

    async def run(self, value: Any) -> list[Any]:
        """The query's rows for `value` (a value as the query's own filter would pass it)."""
        model = self._model
        db = model._meta.db
        built = self._built_for(db.capabilities.dialect)
        params = list(built.params)
        params[built.slot] = value
        executor = db.executor_class(model=model, db=db, select_related_idx=built.related)
        return await executor.execute_select(built.sql, params)


class _Reading(NamedTuple):
    """How a model's rows become its instances, as the ORM's `_init_from_db` makes them."""

    # Whether the primary key is not made by the database (the ORM's `_custom_generated_pk`).
    custom_pk: bool
    # Columns whose value is made into the field's type unless it is null...
    typed: tuple[tuple[str, Callable[[Any], Any]], ...]
    # ...and columns the field converts itself (enums, datetimes, JSON).
    converted: tuple[tuple[str, Callable[[Any], Any]], ...]


_readings: dict[type, _Reading | None] = {}


def _reading(model: type) -> _Reading | None:
    """None for a model with a column named apart from its field (read through the ORM)."""
    if model not in _readings:
        meta = model._meta  # type: ignore[attr-defined]
        groups = (meta.db_native_fields, meta.db_default_fields, meta.db_complex_fields)
        if any(column != name for group in groups for column, name, _ in group):
            _readings[model] = None
        else:
            _readings[model] = _Reading(
                meta.db_pk_column not in meta.generated_db_fields,
                tuple((column, field.field_type) for column, _, field in meta.db_default_fields),
                tuple((column, field.to_python_value) for column, _, field in meta.db_complex_fields),
            )
    return _readings[model]


async def fetch(query: QuerySet) -> list[Any]:
    """`await query` for a read of whole rows (no `only`, related rows or locks): the same
    instances, each made in one step (its values set at once, converting only the columns that
    need it) rather than the ORM's call per field, which for a page of a hundred invoices of
    thirty columns cost as much CPU as the rest of the page's read."""
    reading = _reading(query.model)
    if (
        reading is None or type(query) is not QuerySet or query._select_related or query._prefetch_map
        or query._prefetch_queries or query._fields_for_select or query._single or query._select_for_update
    ):
        return await query
    query._choose_db_if_not_chosen()
    query._make_query()
    _, records = await query._db.execute_query(*query.query.get_parameterized_sql())
    new, model, custom_pk = object.__new__, query.model, reading.custom_pk
    instances = []
    for record in records:
        values = dict(record)
        for column, make in reading.typed:
            if (value := values[column]) is not None:
                values[column] = make(value)
        for column, convert in reading.converted:
            values[column] = convert(values[column])
        instance = new(model)
        instance.__dict__.update(_partial=False, _saved_in_db=True, _custom_generated_pk=custom_pk, _await_when_save={})
        instance.__dict__.update(values)
        instances.append(instance)
    return instances


class TimestampMixin:
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)


class AddressMixin:
    """A postal address, structured the way accounting imports (Xero) expect it."""

    address_line1 = fields.CharField(max_length=255, default="")
    address_line2 = fields.CharField(max_length=255, default="")
    address_line3 = fields.CharField(max_length=255, default="")
    address_line4 = fields.CharField(max_length=255, default="")
    city = fields.CharField(max_length=255, default="")
    region = fields.CharField(max_length=255, default="")
    postal_code = fields.CharField(max_length=64, default="")
    country = fields.CharField(max_length=255, default="")

    ADDRESS_FIELDS = (
        "address_line1", "address_line2", "address_line3", "address_line4",
        "city", "region", "postal_code", "country",
    )


# Address columns as inputs name them (camelCase under `address`), with their length limits:
# column -> (input field, max length, required).
ADDRESS_TEXT_COLUMNS = {
    "address_line1": ("address.line1", 255, False),
    "address_line2": ("address.line2", 255, False),
    "address_line3": ("address.line3", 255, False),
    "address_line4": ("address.line4", 255, False),
    "city": ("address.city", 255, False),
    "region": ("address.region", 255, False),
    "postal_code": ("address.postalCode", 64, False),
    "country": ("address.country", 255, False),
}
