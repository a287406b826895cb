"""The layering of docs/architecture.md ("The layers"), checked on the source text.

Every module under abcc_fast/ is parsed with ``ast`` (nothing is imported). Each import -- at the top
of a file or inside a function, and ``importlib.import_module("abcc_fast....")`` with a literal name --
is mapped to the layer of the module it names. A layer may import itself, the leaves and the layers
``MAY_IMPORT`` lists for it; anything else fails with file:line and the offending import. Also
checked: no import cycle among the packages (nor among the modules), every function-level
import names an optional or heavy dependency with a reason comment beside it, and no function is
longer than 80 lines nor any file longer than 600 lines.

kernels/ (Triton kernels are long straight-line code) is exempt from the function-level-import and
function-length checks only; ``PENDING`` can exempt a package from the cycle, import-style and length
checks while it is rewritten (none is).

Run as a script to list every finding: ``python tests/test_layers.py [PACKAGE_DIR]``.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "abcc_fast"

# module (or package) -> layer; the longest matching prefix decides
LAYER_OF = {
    "abcc_fast": "apps",             # the package root: its lazy attributes (abcc_fast.ABCC) load the model
    "abcc_fast.cli": "apps",
    "abcc_fast.apps": "apps",
    "abcc_fast.analysis": "analysis",
    "abcc_fast.train": "train",
    "abcc_fast.uncertainty": "uncertainty",
    "abcc_fast.opirbench": "opirbench",
    "abcc_fast.model": "model",
    "abcc_fast.vocabulary": "vocabulary",
    "abcc_fast.data": "data",
    "abcc_fast.nn": "ops",           # loss modules over the ops
    "abcc_fast.ops": "ops",
    "abcc_fast.kernels": "kernels",
    "abcc_fast._C": "kernels",       # the compiled extension (csrc/)
    # leaves: importable from any layer, import only leaves
    "abcc_fast.viz": "leaf",
    "abcc_fast._atomic": "leaf",
    "abcc_fast._paths": "leaf",
    "abcc_fast._errors": "leaf",
    "abcc_fast.presets": "leaf",
    "abcc_fast.provenance": "leaf",
    "abcc_fast.pretrained": "leaf",  # packaged model names -> folders; loading is ABCC.from_pretrained's
}
LAYERS = ("leaf", "kernels", "ops", "data", "vocabulary", "model", "opirbench", "analysis", "uncertainty",
          "train", "apps")
# what each layer may import besides itself and the leaves (dependencies point down)
MAY_IMPORT = {
    "leaf": set(),
    "kernels": set(),
    "ops": {"kernels"},
    "data": set(),
    "vocabulary": {"data"},
    "model": {"ops", "data", "vocabulary"},
    "opirbench": {"ops", "data"},
    "uncertainty": set(),
    "train": {"model", "vocabulary", "uncertainty", "data", "analysis"},   # analysis: the SEI labels (w_sei_label)
    "analysis": {"opirbench", "data"},
    "apps": set(LAYERS),
}
# function-level imports are for these only (optional, heavy or platform-specific), each with a comment
LAZY_OK = ("matplotlib", "abcc_fast.viz", "sklearn", "pymcr", "scipy", "triton", "torch.utils.tensorboard",
           "fcntl", "abcc_fast.kernels")   # abcc_fast.kernels: the Triton kernels, whose import imports triton
# ... and, in one module, these: the package root loads the model only when abcc_fast.ABCC is asked for
LAZY_OK_IN = {"abcc_fast": ("abcc_fast.model", "abcc_fast.nn")}
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 600
PENDING = ()                              # packages whose cycle/import-style/length checks are pending
LONG_CODE_OK = ("kernels",)               # Triton kernels: function length and import style not checked


def modules(package: Path = PACKAGE) -> dict:
    """{dotted module name: (path, is_package)} of every .py file under ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def layer_of(module: str):
    best = max((p for p in LAYER_OF if module == p or module.startswith(p + ".")), key=len, default=None)
    return LAYER_OF.get(best)


def _resolve(base: str, name: str, known) -> str:
    """``from base import name``: the submodule base.name when there is one, else base."""
    return f"{base}.{name}" if f"{base}.{name}" in known else base


def _relative_base(module: str, is_pkg: bool, level: int, tail) -> str:
    parts = module.split(".") if is_pkg else module.split(".")[:-1]
    parts = parts[:len(parts) - (level - 1)]
    return ".".join(parts + ([tail] if tail else []))


def _literal_import(node: ast.Call, module: str, is_pkg: bool):
    """The module named by ``importlib.import_module("...")`` / ``__import__("...")`` with a literal."""
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
        return None
    text = arg.value
    if text.startswith("."):
        level = len(text) - len(text.lstrip("."))
        return _relative_base(module, is_pkg, level, text.lstrip(".") or None)
    return text


def imports(package: Path = PACKAGE):
    """(module, path, line, target module, inside a function, source text) for every import of abcc_fast."""
    known = modules(package)
    names = set(known) | {"abcc_fast._C"}
    found = []
    for module, (path, is_pkg) in known.items():
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, str(path))
        in_function = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                in_function.update(id(n) for n in ast.walk(fn) if n is not fn)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = (_relative_base(module, is_pkg, node.level, node.module) if node.level else node.module) or ""
                targets = [_resolve(base, a.name, names) for a in node.names]
            elif isinstance(node, ast.Call):
                target = _literal_import(node, module, is_pkg)
                targets = [target] if target else []
            for target in dict.fromkeys(targets):
                if target == "abcc_fast" or target.startswith("abcc_fast."):
                    found.append((module, path, node.lineno, target, id(node) in in_function,
                                  ast.get_source_segment(text, node) or ""))
    return found


def layer_violations(package: Path = PACKAGE) -> list[str]:
    out = []
    for module in modules(package):
        if layer_of(module) is None:
            out.append(f"{module}: no layer; add it to LAYER_OF in tests/test_layers.py (and to "
                       "docs/architecture.md)")
    for module, path, line, target, in_fn, src in imports(package):
        a, b = layer_of(module), layer_of(target)
        if a is None or b is None:
            if b is None and a is not None:
                out.append(f"{_rel(path, package)}:{line}: {module} imports {target}, which has no layer: `{src}`")
            continue
        if b == "leaf" or a == b or b in MAY_IMPORT[a]:
            continue
        where = " (inside a function)" if in_fn else ""
        out.append(f"{_rel(path, package)}:{line}: {module} [{a}] imports {target} [{b}]{where}: `{src}`")
    return out


def _rel(path: Path, package: Path) -> str:
    return str(path.relative_to(package.parent))


def _cycles(edges: dict) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return comps


def _component(module: str) -> str:
    """abcc_fast.data.format -> abcc_fast.data; abcc_fast.cli -> abcc_fast.cli; the root stays the root."""
    return ".".join(module.split(".")[:2])


def package_cycles(package: Path = PACKAGE) -> list[str]:
    edges: dict = {}
    where: dict = {}
    for module, path, line, target, _, src in imports(package):
        a, b = _component(module), _component(target)
        if a != b:
            edges.setdefault(a, set()).add(b)
            where.setdefault((a, b), f"{_rel(path, package)}:{line} `{src}`")
    return [" -> ".join(c + [c[0]]) + "  (e.g. " + "; ".join(where[(x, y)] for x in c for y in c if (x, y) in where)
            + ")" for c in _cycles(edges)]


def module_cycles(package: Path = PACKAGE) -> list[str]:
    """Cycles among modules (a package's __init__ importing its own modules is not one: only edges from
    a module to another module or to a package's __init__ that does not import it back count)."""
    edges: dict = {}
    where: dict = {}
    for module, path, line, target, _, src in imports(package):
        if any(_is_under(module, p) for p in PENDING) or module == target:
            continue
        edges.setdefault(module, set()).add(target)
        where.setdefault((module, target), f"{_rel(path, package)}:{line} `{src}`")
    out = []
    for comp in _cycles(edges):
        out.append(" <-> ".join(comp) + "  (" + "; ".join(where[(x, y)] for x in comp for y in comp
                                                          if (x, y) in where) + ")")
    return out


def _is_under(module: str, sub: str) -> bool:
    prefix = f"abcc_fast.{sub}"
    return module == prefix or module.startswith(prefix + ".")


def _lazy_names(module: str, is_pkg: bool, node) -> list[str]:
    """The modules a function-level import statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = _relative_base(module, is_pkg, node.level, node.module) if node.level else node.module or ""
    return [f"{base}.{a.name}" if base == "abcc_fast" else base for a in node.names]


def _lines_above(lines: list, j: int) -> list:
    """The lines above line index ``j`` that belong to the same block of lazy imports: imports, blank
    lines, comments, ``try:`` and ``matplotlib.use(...)``."""
    out = []
    while j >= 0:
        text = lines[j].strip()
        if not (text.startswith(("import ", "from ", "#", "try:", "matplotlib.use(")) or not text):
            break
        out.append(text)
        j -= 1
    return out


def lazy_import_findings(package: Path = PACKAGE) -> list[str]:
    """Function-level imports that are not of an optional/heavy dependency with a reason comment."""
    out = []
    for module, (path, is_pkg) in modules(package).items():
        if any(_is_under(module, p) for p in PENDING + LONG_CODE_OK):
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines), str(path))
        nested = {id(n): n for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in sorted(nested.values(), key=lambda n: n.lineno):
            allowed = LAZY_OK + LAZY_OK_IN.get(module, ())
            ok = all(any(n == d or n.startswith(d + ".") for d in allowed) for n in _lazy_names(module, is_pkg, node))
            here = lines[node.lineno - 1]
            commented = "#" in here or any("#" in line for line in _lines_above(lines, node.lineno - 2))
            if not (ok and commented):
                why = "not an optional/heavy dependency" if not ok else "no reason comment beside it"
                out.append(f"{_rel(path, package)}:{node.lineno}: function-level import ({why}): `{here.strip()}`")
    return out


def length_findings(package: Path = PACKAGE) -> list[str]:
    out = []
    for module, (path, _) in modules(package).items():
        if any(_is_under(module, p) for p in PENDING):
            continue
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        if n > MAX_FILE_LINES:
            out.append(f"{_rel(path, package)}: {n} lines (> {MAX_FILE_LINES}); split it")
        if any(_is_under(module, p) for p in LONG_CODE_OK):
            continue
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    out.append(f"{_rel(path, package)}:{node.lineno}: {node.name} is {length} lines "
                               f"(> {MAX_FUNCTION_LINES}); split it into named steps")
    return out


def _fail(title: str, findings: list[str]) -> None:
    assert not findings, f"{title} ({len(findings)}):\n" + "\n".join(findings)


def test_every_import_points_down_the_layers():
    _fail("imports against the layering of docs/architecture.md", layer_violations())


def test_no_import_cycle_among_packages():
    _fail("import cycles among the packages of abcc_fast", package_cycles())


def test_no_import_cycle_among_modules():
    _fail("import cycles among modules (model/ pending)", module_cycles())


def test_function_level_imports_are_only_for_optional_dependencies():
    _fail("function-level imports outside model/, ops/, kernels/", lazy_import_findings())


def test_functions_and_files_are_short():
    _fail("long functions and files (kernels/ functions not checked)", length_findings())


def test_the_checks_see_what_they_should(tmp_path):
    """The checks fail on a planted upward import, function-level import, cycle and long function."""
    pkg = tmp_path / "abcc_fast"
    for sub in ("data", "model", "apps"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("def f():\n    from ..model import m\n    return m\n")
    (pkg / "data" / "b.py").write_text("from . import c\n")
    (pkg / "data" / "c.py").write_text("import importlib\nX = importlib.import_module('abcc_fast.data.b')\n")
    (pkg / "model" / "m.py").write_text("from abcc_fast.data import a\n")
    (pkg / "apps" / "long.py").write_text("def g():\n" + "    x = 1\n" * 90)
    layers = layer_violations(pkg)
    assert any("abcc_fast/data/a.py:2" in v and "[data] imports abcc_fast.model.m [model] (inside a function)"
               in v for v in layers), layers
    assert any("data <-> " in c or "abcc_fast.data.b <-> abcc_fast.data.c" in c for c in module_cycles(pkg))
    assert any("abcc_fast.data -> abcc_fast.model -> abcc_fast.data" in c for c in package_cycles(pkg))
    assert any("abcc_fast/data/a.py:2: function-level import" in f for f in lazy_import_findings(pkg))
    assert any("g is 91 lines" in f for f in length_findings(pkg))


if __name__ == "__main__":
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else PACKAGE
    for title, fn in (("layers", layer_violations), ("package cycles", package_cycles),
                      ("module cycles", module_cycles), ("function-level imports", lazy_import_findings),
                      ("lengths", length_findings)):
        found = fn(root)
        print(f"## {title}: {len(found)}")
        print("\n".join(found))
