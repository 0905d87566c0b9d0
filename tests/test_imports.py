"""The house rules for imports inside ``fastbpf/``, checked on the source
with ``ast`` (nothing is imported to run this test).

1. **No cycles.** The graph of module-to-module imports has no cycle, lazy
   imports inside functions included (a lazy import only hides a cycle).
   Imports under ``if TYPE_CHECKING:`` do not count: they never run.
2. **No private imports across modules.** A name beginning with ``_`` is
   private to the module defining it: no other module imports it
   (``from m import _x``) or reads it (``m._x``).
3. **Private modules stay in their package.** A module whose name begins
   with ``_`` (``link/_base.py``, ``_since.py``) is imported only by modules
   of its own package (siblings and the package ``__init__``). The compiled
   extension modules (every ``fastbpf/*.pyx``: ``_core``, ``_abi_layout``,
   ``_ring``, ``_btfscan``, ``_linkattr``) are the low layer of the whole
   library and may be imported from anywhere; their public names are API to
   the Python layer, their ``_``-names are not (rule 2 still holds).

The package ``__init__`` modules re-export submodules; importing a
submodule makes an edge to that submodule, not to the package, so
``fastbpf/__init__`` importing everything creates no cycle by itself.
"""

from __future__ import annotations

import ast
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fastbpf")

# Exceptions being removed on other branches: (importer, imported module, name).
# Each names its owner; delete an entry once that branch is merged.
KNOWN: set[tuple[str, str, str]] = set()


def _modules() -> tuple[dict[str, str], set[str]]:
    mods: dict[str, str] = {}
    base = os.path.dirname(ROOT)
    for d, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                name = os.path.relpath(path, base)[:-3].replace(os.sep, ".")
                if name.endswith(".__init__"):
                    name = name[: -len(".__init__")]
                mods[name] = path
    compiled = {"fastbpf." + f[:-4] for f in os.listdir(ROOT) if f.endswith(".pyx")}
    return mods, compiled


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                skip.update(id(n) for n in ast.walk(inner))
    return skip


def _graph():
    """(edges {module: {module}}, private uses [(importer, module, name)],
    private-module uses [(importer, module)])."""
    mods, compiled = _modules()
    known = set(mods) | compiled
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private_names: list[tuple[str, str, str]] = []
    private_mods: list[tuple[str, str]] = []

    def package_of(mod: str, path: str) -> str:
        return mod if path.endswith("__init__.py") else mod.rsplit(".", 1)[0]

    def use_module(importer: str, target: str) -> None:
        edges[importer].add(target)
        leaf = target.rsplit(".", 1)[-1]
        if "." in target and leaf.startswith("_") and target not in compiled:
            if target.rsplit(".", 1)[0] != package_of(importer, mods[importer]):
                private_mods.append((importer, target))

    for mod, path in mods.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        skip = _type_checking_nodes(tree)
        pkg = package_of(mod, path)
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = pkg.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                if not base.startswith("fastbpf"):
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in known:
                        use_module(mod, full)
                        aliases[alias.asname or alias.name] = full
                        continue
                    if base != mod:
                        use_module(mod, base)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private_names.append((mod, base, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("fastbpf"):
                        use_module(mod, alias.name)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                private_names.append((mod, aliases[node.value.id], node.attr))
    for m in edges:
        edges[m].discard(m)
    return edges, private_names, private_mods


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    edges, _, _ = _graph()
    assert _cycles(edges) == []


def test_no_private_names_across_modules():
    _, private, _ = _graph()
    bad = sorted(set(private) - KNOWN)
    assert bad == [], "private names imported across modules: " + ", ".join(
        f"{a} uses {b}.{n}" for a, b, n in bad)


def test_private_modules_stay_in_their_package():
    _, _, private_mods = _graph()
    assert sorted(set(private_mods)) == []


def test_the_walk_sees_what_it_checks():
    # Guard against a walk that silently finds nothing.
    edges, _, _ = _graph()
    assert "fastbpf._core" in edges["fastbpf.maps"]
    assert "fastbpf.link._base" in edges["fastbpf.link.tracing"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_one_typing_style():
    # Every module postpones annotations and spells optionals ``X | None``.
    mods, _ = _modules()
    for mod, path in sorted(mods.items()):
        with open(path) as f:
            src = f.read()
        assert "from __future__ import annotations" in src, mod
        tree = ast.parse(src, path)
        from_typing = {a.asname or a.name for n in ast.walk(tree)
                       if isinstance(n, ast.ImportFrom) and n.module == "typing" for a in n.names}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                    and node.value.id in {"Optional", "Union"} & from_typing):
                raise AssertionError(f"{mod}:{node.lineno}: {node.value.id}[...]; "
                                     "write X | None")


def test_bpf_errors_come_from_the_factories():
    # errors.bpf_error / not_supported_error / target_not_found_error pick
    # the class by errno (PermissionError, FileNotFoundError, ...): nothing
    # else constructs those classes directly.
    made_here = {"BPFError", "NotSupportedError", "TargetNotFoundError"}
    mods, _ = _modules()
    for mod, path in sorted(mods.items()):
        if mod == "fastbpf.errors":
            continue
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
                assert name not in made_here, f"{mod}:{node.lineno} builds {name} directly"
