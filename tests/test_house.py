"""The house rules that a reader relies on: where code lives, which way imports flow, that
importing starts nothing, and that every error code a client can receive is listed."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from invoicing.root import sdl
from models import errors

ROOT = Path(__file__).resolve().parent.parent
# Lower layers first: a module may import its own layer and the ones after it, never before.
LAYERS = ("invoicing", "resolvers", "schema", "jobs", "infra", "models")
# What each layer may not import: the entry package assembles the root schema from the resolvers'
# fields, which answer with the schema's types; then jobs and plumbing, then models, which import
# none of the others, settings aside.
FORBIDDEN = {
    "models": ("invoicing", "schema", "resolvers", "jobs", "infra"),
    "infra": ("invoicing", "schema", "resolvers", "jobs"),
    "jobs": ("invoicing", "schema", "resolvers"),
    "schema": ("invoicing", "resolvers"),
    "resolvers": ("invoicing",),
}
ALLOWED = {("models", "infra.settings")}


def _files() -> dict[str, Path]:
    """Module name -> file, for every module of the product's packages."""
    found = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> list[str]:
    """Each product module the file imports: at its top, inside a function or under `if
    TYPE_CHECKING:` alike, since a module that needs another only to name a type is read with
    it all the same."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                # `from models import invoices` imports the module models.invoices.
                submodule = f"{node.module}.{alias.name}"
                found.append(submodule if submodule in modules else node.module)
    return [name for name in found if name.split(".")[0] in LAYERS]


def test_no_python_module_sits_at_the_repository_root():
    assert sorted(path.name for path in ROOT.glob("*.py")) == []


def test_imports_flow_one_way():
    modules = _files()
    wrong = []
    for name, path in modules.items():
        layer = name.split(".")[0]
        for imported in _imports(path, modules):
            target = imported.split(".")[0]
            if target in FORBIDDEN.get(layer, ()) and (layer, imported) not in ALLOWED:
                wrong.append(f"{name} imports {imported}")
    assert wrong == [], "\n".join(wrong)


def test_no_import_cycle_between_files():
    """Type-only and function-level imports count too. A schema type may still name another
    by `strawberry.lazy("module")`: a string, which strawberry reads once the schema is built."""
    modules = _files()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {imported for imported in _imports(path, modules) if imported in modules and imported != name}
    cycles = []
    state: dict[str, str] = {}

    def walk(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            # A package's __init__ re-exporting its own modules is not a cycle of files.
            if node == nxt.rsplit(".", 1)[0] or nxt == node.rsplit(".", 1)[0]:
                continue
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                walk(nxt, [*stack, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert cycles == [], "\n".join(cycles)


MAX_FILE_LINES = 500
MAX_MODEL_FUNCTION_LINES = 80


def test_no_product_file_is_over_500_lines():
    long = [
        f"{path.relative_to(ROOT)}: {lines} lines"
        for path in sorted(_files().values())
        if (lines := len(path.read_text().splitlines())) > MAX_FILE_LINES
    ]
    assert long == [], "\n".join(long)


def test_no_function_in_models_is_over_80_lines():
    """Counted from the `def` line to the function's last line, docstring included."""
    long = []
    for path in sorted((ROOT / "models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_MODEL_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert long == [], "\n".join(long)


def test_importing_any_module_starts_nothing_and_changes_no_settings(tmp_path):
    """In a fresh interpreter with no server URLs configured, importing every module of the
    product neither starts an embedded server (nothing appears in DATA_DIR, no child process)
    nor fills in the settings."""
    modules = sorted(_files())
    script = f"""
import importlib, json, psutil
for name in {modules!r}:
    importlib.import_module(name)
from infra.settings import get_settings
settings = get_settings()
print(json.dumps({{"database_url": settings.database_url, "redis_url": settings.redis_url,
                   "children": len(psutil.Process().children(recursive=True))}}))
"""
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env["DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "database_url": None,
        "redis_url": None,
        "children": 0,
    }
    assert not (tmp_path / "data").exists()


def _domain_errors() -> list[type[errors.DomainError]]:
    found, pending = [], [errors.DomainError]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(current.__subclasses__())
    return found


def test_every_domain_error_carries_a_listed_code():
    import models.costs  # noqa: F401  (its error types register as subclasses)

    assert {type(error.code) for error in _domain_errors()} == {errors.ErrorCode}


def _string_codes() -> list[tuple[str, str]]:
    """(file, code) for every error code written as a string literal: a `code=` argument or
    attribute, or an `extensions={"code": ...}` of a top-level error."""
    found = []
    for path in _files().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "code" and isinstance(node.value, ast.Constant):
                found.append((path.name, node.value.value))
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if isinstance(key, ast.Constant) and key.value == "code" and isinstance(value, ast.Constant):
                        found.append((path.name, value.value))
    return found


def test_no_error_code_is_written_outside_the_lists():
    assert _string_codes() == []


@pytest.mark.parametrize("code", [*errors.ErrorCode, *errors.RequestErrorCode], ids=str)
def test_every_listed_code_is_described_in_the_sdl(code):
    user_error = sdl().split("interface UserError", 1)[1].split("}", 1)[0]
    assert f"{code.value}: " in user_error


def _answer_keys(node: ast.AST) -> list[object]:
    """The constant keys of a subscript chain: result["data"]["x"] -> ["x", "data"]."""
    keys = []
    while isinstance(node, ast.Subscript):
        if isinstance(node.slice, ast.Constant):
            keys.append(node.slice.value)
        node = node.value
    return keys


def _truthy_answers(node: ast.AST) -> list[ast.AST]:
    """Parts of an assert's test that only ask a GraphQL answer's data or errors to be truthy."""
    if isinstance(node, ast.BoolOp):
        return [found for value in node.values for found in _truthy_answers(value)]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return _truthy_answers(node.operand)
    if isinstance(node, ast.Subscript) and {"data", "errors"} & set(_answer_keys(node)):
        return [node]
    return []


def test_no_test_asserts_a_graphql_answer_only_to_be_truthy():
    """`assert result["data"]["x"]` holds for any answer that is not empty: an error payload, a
    refusal's union member, a wrong record. Compare with what the answer must be."""
    bare = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assert):
                bare += [f"{path.name}:{node.lineno}: {ast.unparse(found)}" for found in _truthy_answers(node.test)]
    assert bare == []


# Opening a unit of work whose committed transitions are followed by their effects: the only
# names of jobs.effects that other modules use (the mutation helper, commands, jobs).
EFFECT_ENTRIES = {"following", "runs_effects", "run"}


def _effect_work() -> set[str]:
    """What the effects table does that no one else may: the `dispatch.*` queueing it calls and
    the `events.*` it publishes."""
    found = set()
    for node in ast.walk(ast.parse((ROOT / "jobs" / "effects.py").read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("dispatch", "events"):
            found.add(f"{node.value.id}.{node.attr}")
    return found


def test_no_module_but_the_effects_table_names_an_effect():
    """An effect belongs to a transition, not to a caller (ARCHITECTURE.md rule 8): writers
    record transitions (models.outbox) and open units of work; only jobs/effects.py names an
    effect, publishes an invoice's or a token's event, or queues the job a transition calls for
    (jobs/dispatch.py, where the queueing is written, and infra/events.py aside)."""
    work = _effect_work()
    assert {"events.publish", "dispatch.enqueue_send", "dispatch.enqueue_generation"} <= work
    wrong = []
    for name, path in _files().items():
        if name in ("jobs.effects", "jobs.dispatch", "infra.events"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "jobs.effects":
                wrong += [f"{name} imports {alias.name}" for alias in node.names if alias.name not in EFFECT_ENTRIES]
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                called = f"{node.value.id}.{node.attr}"
                if node.value.id == "effects" and node.attr not in EFFECT_ENTRIES or called in work:
                    wrong.append(f"{name}:{node.lineno} {called}")
    assert wrong == []


def _recorded() -> set[tuple[str, str]]:
    """(entity, transition) of every `record(Entity.X, Transition.Y, ...)` of the product."""
    found = set()
    for path in _files().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "record":
                entity, transition = (ast.unparse(arg).split(".")[-1] for arg in node.args[:2])
                found.add((entity, transition))
    return found


def test_every_recorded_transition_has_its_row_in_the_effects_table():
    from jobs.effects import EFFECTS

    recorded = _recorded()
    assert ("INVOICE", "APPROVED") in recorded and ("PERIOD", "CLOSED") in recorded
    assert recorded <= {(entity.name, transition.name) for entity, transition in EFFECTS}


def test_every_job_and_scheduled_run_is_a_unit_of_work():
    """What a job commits is followed by its effects however it was started (the worker, a
    test, a command): each task the worker runs is wrapped by `runs_effects`."""
    from jobs.worker import WorkerSettings

    tasks = [*WorkerSettings.functions, *WorkerSettings.cron_jobs]
    assert [task.coroutine.__name__ for task in tasks if task.coroutine.__code__.co_name != "unit_of_work"] == []
