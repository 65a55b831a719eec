"""The import graph of tokenbridge/, read with `ast`: no circle, and no module imports from a layer above
its own (README, "How it is built").

Every import counts: `import x`, `from x import y` (y a module or a name in x), inside functions,
and under `if TYPE_CHECKING:`. A type-only import still ties the design together: the type's module
must be importable before this one is understood, and a circle guarded by TYPE_CHECKING is one
un-guarding away from an ImportError (STYLE.md, "Type-only imports count"). What is not counted:
the parent packages Python runs on the way to a submodule (`tokenbridge.api` for
`tokenbridge.api.auth`), as import-linter does not; a package's `__init__` is counted for what it
imports itself.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "tokenbridge"
# Runtime dependencies the package uses without importing them itself: uvicorn picks them up.
USED_THROUGH_UVICORN = {"httptools", "uvloop"}

# Lowest first. A module may import from its own layer and the layers below; the groups of one layer
# (store and upstream) stand side by side and import nothing from each other. A module belongs to the
# group with the longest prefix that names it (upstream.proxy is a stage; the rest of upstream/ is not).
LAYERS: tuple[dict[str, tuple[str, ...]], ...] = (
    {
        "core": (
            "tokenbridge",  # the package itself: __version__
            "asgi", "errors", "money", "tomlread", "settings", "circuits", "limits", "durations", "keyrules",
            "tokens", "logs", "process", "wire", "faces", "routing", "embeddings", "ids", "passwords", "periods",
            "accountsettings", "clientaddr", "autherrors", "pricing",
        ),
    },
    {"store": ("store",), "upstream": ("upstream",)},
    {
        "shared": (
            "call", "outcome", "completions", "chat_messages", "chat_messages_stream", "messages", "messages_stream",
            "responses", "responses_answer", "responses_stream", "adapters", "metrics", "report", "runtime", "purse",
        ),
    },
    {"stages": ("stages", "upstream.proxy", "observe", "cors", "direct")},
    {"app": ("endpoints", "count_tokens", "api", "console", "app", "serve", "cli", "cli_common", "cli_accounts", "cli_ops", "__main__")},
)  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The tokenbridge modules `name` imports, each once."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def owner(target: str) -> str:  # `tokenbridge.x.y` names module x.y, or a name in x, or in tokenbridge
        while target not in known:
            target = target.rpartition(".")[0]
        return target

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {owner(a.name) for a in node.names if a.name.split(".")[0] == "tokenbridge"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] == "tokenbridge":
                found |= {owner(f"{base}.{a.name}") for a in node.names}
    return found - {name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def place(name: str) -> tuple[int, str]:
    """(layer index, group) of a module: the longest prefix listed that names it."""
    best: tuple[int, int, str] | None = None
    short = name.removeprefix("tokenbridge.") if name != "tokenbridge" else name
    for index, groups in enumerate(LAYERS):
        for group, prefixes in groups.items():
            for prefix in prefixes:
                if (short == prefix or short.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), index, group)
    if best is None:
        raise AssertionError(f"{name} is in no layer: add it to LAYERS (and to README's 'How it is built')")
    return best[1], best[2]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected parts of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_layers_the_graph_sees_every_kind_of_import() -> None:
    """The reader itself: a checker that misses imports would pass anything."""
    edges = graph()
    assert "tokenbridge.runtime" in edges["tokenbridge.app"]  # from tokenbridge.runtime import Runtime
    assert "tokenbridge.keyrules" in edges["tokenbridge.cli_accounts"]  # from tokenbridge import keyrules
    assert "tokenbridge.settings" in edges["tokenbridge.call"]  # under TYPE_CHECKING
    assert "tokenbridge.logs" in edges["tokenbridge.app"]  # inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_no_import_cycle_in_the_package() -> None:
    assert cycles(graph()) == []


def test_layers_every_module_has_a_layer() -> None:
    for name in modules():
        place(name)


def test_layers_no_module_imports_from_above_or_beside_its_layer() -> None:
    wrong = []
    for name, targets in sorted(graph().items()):
        layer, group = place(name)
        for target in sorted(targets):
            their_layer, their_group = place(target)
            if their_layer > layer or (their_layer == layer and their_group != group):
                wrong.append(f"{name} ({group}) imports {target} ({their_group})")
    assert wrong == []


@pytest.mark.parametrize(
    ("name", "layer"), [("tokenbridge.upstream.proxy", "stages"), ("tokenbridge.upstream.client", "upstream")]
)
def test_layers_the_longest_prefix_places_a_module(name: str, layer: str) -> None:
    assert place(name)[1] == layer


def dist_name(text: str) -> str:
    return re.sub(r"[-_.]+", "_", text).lower()


def test_layers_runtime_dependencies_are_what_the_package_imports() -> None:
    """A runtime dependency nothing in tokenbridge/ imports belongs in the test extras (httpx), and an
    import of a distribution not declared would fail on a clean install."""
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    declared = {dist_name(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    providers = packages_distributions()
    imported = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    foreign = imported - set(sys.stdlib_module_names) - {"tokenbridge"}
    used = {dist_name(d) for module in foreign for d in providers.get(module, [module])}
    assert used - declared == set()
    assert declared - used == USED_THROUGH_UVICORN


def test_layers_readme_states_the_layers_checked_here() -> None:
    line = "  <-  ".join(" | ".join(groups) for groups in LAYERS)
    assert f"\n    {line}\n" in (PACKAGE.parent / "README.md").read_text()
