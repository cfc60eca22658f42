"""Contracts kept as files: the exported schema, the package layering, the scope map."""

import ast
from pathlib import Path

from support import REPO_ROOT

from graph.errors import SPECS, ErrorCode, error_table
from graph.export_schema import schema_sdl
from graph.schema import build_schema
from graph.schema.permissions import FIELD_SCOPES

ALLOWED_IMPORTS = {
    "model": set(),
    "persistence": set(),
    "auth": set(),
    "training": {"model", "persistence"},
    "graph": {"model", "persistence", "auth"},
    "failcast": {"graph", "model", "persistence", "auth", "training"},
}


def test_committed_schema_matches_the_code():
    committed = (REPO_ROOT / "graph" / "schema.graphql").read_text(encoding="utf-8")
    assert committed == schema_sdl(), "graph/schema.graphql is stale: run `make schema`"


def _project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & set(ALLOWED_IMPORTS)


def test_packages_import_only_what_the_architecture_allows():
    offences = []
    for package, allowed in ALLOWED_IMPORTS.items():
        for path in (REPO_ROOT / package).rglob("*.py"):
            bad = _project_imports(path) - allowed - {package}
            offences += [f"{path.relative_to(REPO_ROOT)} imports {name}" for name in sorted(bad)]
    assert offences == []


# Inside graph/: the edge uses the schema and the runtime, the schema uses the runtime, and the
# runtime knows neither (errors and settings are shared by all three).
GRAPH_LAYERS = {"runtime": {"schema", "edge"}, "schema": {"edge"}, "edge": set()}


def _graph_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("graph."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("graph.")}
    return found


def test_graph_layers_import_downwards_only():
    offences = []
    for layer, forbidden in GRAPH_LAYERS.items():
        for path in (REPO_ROOT / "graph" / layer).rglob("*.py"):
            bad = _graph_imports(path) & forbidden
            offences += [f"{path.relative_to(REPO_ROOT)} imports graph.{name}" for name in bad]
    assert offences == []


def test_every_root_field_declares_its_scope():
    schema = build_schema()._schema
    roots = [schema.query_type, schema.mutation_type, schema.subscription_type]
    fields = {name for root in roots for name in root.fields}
    assert fields == set(FIELD_SCOPES)


def test_the_readme_error_table_is_the_one_the_code_defines():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert error_table() in readme, "README's error table is stale: python -m graph.errors"
    assert set(SPECS) == set(ErrorCode), "every code needs its status, outcome and meaning"
