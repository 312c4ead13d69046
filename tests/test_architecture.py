"""The layout rule of docs/architecture.md, checked over the source's import statements.

* Packages form layers; a module imports only from its own package or a lower layer.
* The system packages (bolide, streaks, movers, stamps, dso) never import each other.
* No module imports another package's private (``_``-prefixed) names.
* Imports inside functions are kept for optional heavy dependencies only
  (torch, onnxruntime, the web stack, ...), each with a comment saying why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "skysift"

#: Lowest first. A package may import from its own layer's package and from any lower layer;
#: packages that share a layer are peers and do not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "_version"),
    ("_validation",),
    ("io",),
    ("outputs", "data"),
    ("detection",),
    ("measurement",),
    ("calibration",),
    ("learning",),
    ("simulation",),
    ("evaluation",),
    ("stars",),
    ("bolide", "streaks", "movers", "stamps", "dso"),
    ("batch",),  # the batch layer (Dask): calls the systems' functions, one task per input
    ("__init__",),  # the lazy top-level facade (``skysift.calibrate`` ...)
    ("web",),
    ("cli",),
    ("__main__",),
]
LAYER = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}

#: Top-level modules that may be imported inside functions (optional or heavy extras).
OPTIONAL = {
    "torch", "onnxruntime", "onnx", "safetensors", "fastapi", "uvicorn", "starlette", "pydantic",
    "httpx", "selenium", "imageio", "imageio_ffmpeg", "galsim", "tetra3rs", "astroscrappy",
    "acstools", "pyarrow", "pandas", "pyongc", "dask", "distributed",
}  # fmt: skip


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1] if len(parts) > 2 else [*parts[:-1], "__init__"]
        out.append((".".join(parts), path))
    return out


def _imports(path: Path):
    """(module, names, in_function, lineno, has_comment) of every skysift/third-party import."""
    src = path.read_text(encoding="utf-8")
    lines = src.splitlines()
    tree = ast.parse(src)
    in_func: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_func.update(
                id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))
            )
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            mods = [(node.module, [a.name for a in node.names])]
        elif isinstance(node, ast.Import):
            mods = [(a.name, []) for a in node.names]
        else:
            continue
        prev = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        comment = "#" in lines[node.lineno - 1] or prev.startswith("#")
        for mod, names in mods:
            yield mod, names, id(node) in in_func, node.lineno, comment


MODULES = _modules()


def _heavy_modules() -> set[str]:
    """skysift modules that import an OPTIONAL dependency when imported (transitively)."""
    deps = {m: {mod for mod, _, in_func, _, _ in _imports(p) if not in_func} for m, p in MODULES}
    for m in deps:  # importing a module imports its parent packages first
        parts = m.split(".")
        deps[m] |= {".".join(parts[:k]) for k in range(2, len(parts))}
    heavy = {m for m, d in deps.items() if any(x.split(".")[0] in OPTIONAL for x in d)}
    changed = True
    while changed:
        changed = False
        for m, d in deps.items():
            if m not in heavy and any(x in heavy for x in d):
                heavy.add(m)
                changed = True
    return heavy


HEAVY = _heavy_modules()


def test_every_package_has_a_layer():
    pkgs = {_package(m) for m, _ in MODULES}
    missing = sorted(pkgs - set(LAYER))
    assert not missing, f"add these packages to LAYERS (and docs/architecture.md): {missing}"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_go_downward(module, path):
    src_pkg = _package(module)
    bad = []
    for mod, names, _, line, _ in _imports(path):
        if not mod.startswith("skysift"):
            continue
        dst_pkg = _package(mod) if mod != "skysift" else "__init__"
        if mod == "skysift" and names:
            # ``from skysift import calibration`` names a subpackage
            sub = [n for n in names if (SRC / n).is_dir() or (SRC / f"{n}.py").exists()]
            if sub:
                dst_pkg = sub[0]
        if dst_pkg == src_pkg:
            continue
        if LAYER.get(dst_pkg, 99) >= LAYER.get(src_pkg, -1):
            bad.append(f"line {line}: {src_pkg} -> {dst_pkg} ({mod})")
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private:
            bad.append(f"line {line}: private name(s) {private} of {mod}")
    assert not bad, f"{module}: " + "; ".join(bad)


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_function_level_imports_are_optional_heavy_ones(module, path):
    bad = []
    for mod, _, in_function, line, comment in _imports(path):
        if not in_function:
            continue
        optional = (
            mod.split(".")[0] in OPTIONAL or mod in HEAVY or mod.startswith("skysift.web")
        )  # the web package imports fastapi on use
        if not optional:
            bad.append(f"line {line}: {mod} imported inside a function")
        elif not comment:
            bad.append(f"line {line}: {mod} imported inside a function without a comment why")
    assert not bad, f"{module}: " + "; ".join(bad)


def test_the_rule_can_fail(tmp_path):
    """The checker sees an upward import and a function-level one."""
    p = tmp_path / "m.py"
    p.write_text("import numpy\n\ndef f():\n    from skysift.bolide import pipeline\n")
    found = list(_imports(p))
    assert ("skysift.bolide", ["pipeline"], True, 4, False) in found
    assert LAYER["bolide"] > LAYER["calibration"]
