"""The package's shape (issue 17): small modules, a small root, imports at the top.

No module of ``arkor_nb`` is over 400 lines, the package root holds at most
four ``.py`` files (the layers live in folders), and a module imports our own
modules inside a function only to defer an optional dependency: the deferred
module must import that dependency at its top (``DEFERRED`` says which).
"""

from __future__ import annotations

import ast
from pathlib import Path

import arkor_nb

PACKAGE = Path(arkor_nb.__file__).parent
MAX_LINES = 400
MAX_ROOT_FILES = 4

# Our modules that may be imported inside a function, and the optional
# dependency each one imports at its top (what the deferral keeps out).
DEFERRED = {
    "arkor_nb.local.server.app": "starlette",  # the [local] extra
    "arkor_nb.local.server.request_timeouts": "uvicorn",  # the [local] extra
    "arkor_nb.notebook.panel": "ipywidgets",  # the [notebook] extra
}


def long_modules(root: Path, limit: int = MAX_LINES) -> list[str]:
    return [f"{p.relative_to(root)}: {n} lines" for p in sorted(root.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > limit]


def function_level_imports(root: Path) -> list[tuple[str, int, str]]:
    """(file, line, module) of each import of ``arkor_nb.*`` inside a function body."""
    hits = set()
    for path in sorted(root.rglob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom):
                    names = ["." * node.level + (node.module or "")]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                for name in names:
                    if name.startswith((".", "arkor_nb")):
                        hits.add((str(path.relative_to(root)), node.lineno, name))
    return sorted(hits)


def top_level_imports(path: Path) -> set[str]:
    """The top-level package of every import at module level (not inside a def)."""
    found = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
    return found


def test_no_module_is_over_400_lines() -> None:
    assert long_modules(PACKAGE) == []


def test_the_package_root_holds_at_most_four_python_files() -> None:
    root_files = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert "__init__.py" in root_files
    assert len(root_files) <= MAX_ROOT_FILES, root_files


def test_function_level_imports_of_our_modules_only_defer_an_optional_dependency() -> None:
    stray = [hit for hit in function_level_imports(PACKAGE) if hit[2] not in DEFERRED]
    assert stray == []
    for module, dependency in DEFERRED.items():
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        assert dependency in top_level_imports(path), (module, dependency)


def test_the_shape_checks_see_what_they_look_for(tmp_path: Path) -> None:
    """The scans above are not vacuous: a long module and a lazy import are found."""
    pkg = tmp_path / "arkor_nb"
    pkg.mkdir()
    (pkg / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (pkg / "ok.py").write_text("x = 1\n" * MAX_LINES)
    (pkg / "lazy.py").write_text("def f():\n    from arkor_nb.ok import x\n    import json\n"
                                 "    return x, json\n")
    assert long_modules(pkg) == [f"big.py: {MAX_LINES + 1} lines"]
    assert function_level_imports(pkg) == [("lazy.py", 2, "arkor_nb.ok")]
    assert "ipywidgets" in top_level_imports(PACKAGE / "notebook" / "panel.py")
