"""The import direction of STYLE.md: cli → daemon → edges → services → store/render → core."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "mailtix"

# Layer of each top-level module or package; a module may import only its own
# layer or lower ones. config/errors are leaves anyone may use.
LAYERS = {
    "cli": 6,
    "__main__": 7,
    "daemon": 5,
    "inbound": 4,
    "outbound": 4,
    "runner": 4,
    "scheduler": 4,
    "services": 3,
    "store": 2,
    "render": 2,
    "core": 1,
    "config": 0,
    "errors": 0,
    "__init__": 0,
}
# Third-party packages that only some layers may use.
ONLY_IN = {
    "sqlalchemy": {"store"},
    "sqlmodel": {"store", "services", "outbound", "inbound", "render"},
    "jinja2": {"render"},
    "aiosmtpd": {"inbound"},
    "imapclient": {"inbound"},
}
# The pure core uses none of these (no clock, sockets, files, env, database).
CORE_FORBIDDEN = {
    "sqlalchemy",
    "sqlmodel",
    "jinja2",
    "socket",
    "smtplib",
    "imaplib",
    "imapclient",
    "aiosmtpd",
    "asyncio",
    "threading",
    "subprocess",
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _layer_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _every_import() -> Iterator[tuple[str, str, str]]:
    """(module path, its layer, imported name) for every module but the migrations."""
    for path in PKG.rglob("*.py"):
        if "migrations" not in path.parts:
            for name in _imports(path):
                yield str(path.relative_to(PKG)), _layer_of(path), name


def test_imports_point_downward_only() -> None:
    """No module imports a layer above its own."""
    bad = [
        f"{where} imports {name}"
        for where, mine, name in _every_import()
        if name.startswith("mailtix.") and LAYERS.get(name.split(".")[1], 99) > LAYERS[mine]
    ]
    assert bad == []


def test_third_party_stays_in_its_layer() -> None:
    """sqlalchemy only in store, jinja2 only in render, servers' libraries only at the edges."""
    bad = [
        f"{where} imports {name}"
        for where, mine, name in _every_import()
        if name.split(".")[0] in ONLY_IN and mine not in ONLY_IN[name.split(".")[0]]
    ]
    assert bad == []


def test_core_is_pure() -> None:
    """core/ imports no database, template, socket, thread or process module."""
    bad = []
    for path in (PKG / "core").rglob("*.py"):
        for name in _imports(path):
            if name.split(".")[0] in CORE_FORBIDDEN:
                bad.append(f"{path.relative_to(PKG)} imports {name}")
            if name.startswith("mailtix.") and name.split(".")[1] not in ("core", "errors"):
                bad.append(f"{path.relative_to(PKG)} imports {name}")
    assert bad == []


def test_no_module_shadows_the_standard_library() -> None:
    """No module is named like a stdlib one (email.py, queue.py…)."""
    import sys

    clashes = [
        str(p.relative_to(PKG))
        for p in PKG.rglob("*.py")
        if p.stem in sys.stdlib_module_names and p.stem != "__main__"
    ]
    assert clashes == []
