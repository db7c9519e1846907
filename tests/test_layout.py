"""The shape of the code: packages import only the layers below them, no import cycles (but a
registry and its plugins), no module much over 500 lines, and the names the CLI and the UI list are
readable without importing torch. The README's Development section describes the same map."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "faceloom"

LAYERS: list[tuple[str, ...]] = [
    (
        "faceloom",
        "config",
        "errors",
        "progress",
        "checks",
        "fsutil",
        "metrics",
        "pipeline",
        "runtime",
        "safe_pickle",
    ),
    ("media",),
    ("provenance",),
    ("faces",),
    ("extract",),
    ("train",),
    ("analysis", "evaluation", "convert"),
    ("live", "workspace"),
    ("ui",),
    ("cli",),
    ("__main__",),
]
"""Bottom to top: a module may import its own package and the layers below it, never a layer above
nor a sibling package of its own layer."""

ALLOWED_CYCLES = [
    {"faceloom.faces.detect", "faceloom.faces.detect_dlib", "faceloom.faces.detect_mediapipe"},
    {"faceloom.train.models.registry", "faceloom.train.models.lite"},
    {"faceloom.train.models.registry", "faceloom.train.models.loom"},
    {"faceloom.train.models.registry", "faceloom.train.models.original"},
]
"""A registry imports its plugins to find them, and they import it to register."""

LONG_MODULES = {
    "faceloom/analysis/coverage.py": "the coverage rules, one table, and their measures read together",
    "faceloom/metrics.py": "one module of metrics by design (DESIGN.md): tests and benchmarks share them",
}
"""Modules allowed past MAX_LINES, and why."""
MAX_LINES = 520


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The faceloom modules ``path`` imports at run time (anywhere but under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
    return {m for m in out if m in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _layer(module: str) -> tuple[int, str]:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "faceloom"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i, top
    raise AssertionError(f"{module}: package {top!r} has no layer in tests/test_layout.py")


def test_packages_import_only_the_layers_below() -> None:
    wrong = []
    for module, imported in _graph().items():
        mine, top = _layer(module)
        for other in imported:
            theirs, other_top = _layer(other)
            if theirs > mine or (theirs == mine and other_top != top and mine != 0):
                wrong.append(f"{module} -> {other}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles_but_registries_and_their_plugins() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    allowed = set().union(*ALLOWED_CYCLES)
    bad = [c for c in components if not c <= allowed]
    assert not bad, f"import cycles: {[sorted(c) for c in bad]}"


def test_no_module_much_over_500_lines() -> None:
    long = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        n = len(path.read_text().splitlines())
        if n > MAX_LINES and rel not in LONG_MODULES:
            long[rel] = n
    assert not long, f"modules over {MAX_LINES} lines (split them, or say why in LONG_MODULES): {long}"


def test_names_the_cli_and_ui_list_need_no_torch() -> None:
    code = (
        "import sys\n"
        "import faceloom.cli, faceloom.ui.app, faceloom.workspace\n"
        "from faceloom.config.choices import MODEL_NAMES, DETECTOR_NAMES\n"
        "from faceloom.workspace.stages import STAGE_NAMES\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(','.join(MODEL_NAMES), ','.join(STAGE_NAMES))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["lite,original,loom", "extract,analyze,train,convert,eval"]
    from faceloom.config.choices import MODEL_NAMES
    from faceloom.train.models import model_names

    assert sorted(model_names()) == sorted(MODEL_NAMES)  # the registry checks the same at load time
