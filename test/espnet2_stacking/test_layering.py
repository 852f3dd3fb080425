"""The package's layers import downward only, and no two packages import each other.

Every module's imports are read with ``ast`` (those inside functions included, since a lazy
import is still a dependency). The layers, lowest first, are ``LAYERS`` (README "Layout").
"""

import ast
from pathlib import Path

import pytest

import espnet2_stacking

PACKAGE_DIR = Path(espnet2_stacking.__file__).parent
# lowest first: a package may import only packages of a lower rank (and itself)
LAYERS = [
    "core",  # frame geometry, list parsing: pure Python
    "stacking",  # growth maps, schedules, alignment, plans: pure Python
    "data",  # utterances, Kaldi dirs, audio checks, atomic writes, corpus preparation
    "upstreams",  # every frozen model behind AbsUpstream
    "student",  # the growing encoder, the distillation model, loss, collate
    "asr",  # downstream: the upstream frontend, scoring, results
    "training",  # the trainer that grows the student, optimizer state rules, LR scheduler
    "tasks",  # ESPnet tasks: arguments -> components
    "pipelines",  # teacher dump, export, demo-teacher pretraining and probing
    "bin",  # entry points: argument parsing only
]
RANK = {name: i for i, name in enumerate(LAYERS)}
PURE = ("core", "stacking")  # import neither torch nor ESPnet (plans are checked before either loads)


def module_imports(path: Path):
    """(line, imported module) for every import in a file, nested ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:  # "from espnet2_stacking import x" imports package x
                if node.module == "espnet2_stacking":
                    yield node.lineno, f"espnet2_stacking.{alias.name}"


def package_of(module: str):
    parts = module.split(".")
    return parts[1] if parts[0] == "espnet2_stacking" and len(parts) > 1 else None


def package_edges():
    """{(importer package, imported package): ["file:line", ...]} over the whole package."""
    edges = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR)
        if len(rel.parts) < 2:
            continue  # espnet2_stacking/__init__.py only
        src = rel.parts[0]
        for line, module in module_imports(path):
            dst = package_of(module)
            if dst is not None and dst != src:
                edges.setdefault((src, dst), []).append(f"{rel}:{line}")
    return edges


def find_cycle(edges):
    """One cycle of the package graph as a list of packages, or None."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(LAYERS), f"give every package a layer: {sorted(packages ^ set(LAYERS))}"


def test_imports_run_downward_only():
    upward = [f"{where}: {src} imports {dst}"
              for (src, dst), places in package_edges().items()
              if RANK[dst] > RANK[src] for where in places]
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_no_package_cycle():
    assert find_cycle(package_edges()) is None


@pytest.mark.parametrize("package", PURE)
def test_pure_packages_import_neither_torch_nor_espnet(package):
    heavy = [f"{path.relative_to(PACKAGE_DIR)}:{line}: {module}"
             for path in sorted((PACKAGE_DIR / package).rglob("*.py"))
             for line, module in module_imports(path)
             if module.split(".")[0] in ("torch", "torchaudio", "espnet", "espnet2", "numpy")]
    assert not heavy, heavy


def test_the_checker_sees_upward_imports_and_cycles(tmp_path):
    """The rules above can fail: a cycle is found, and so is an import inside a function."""
    assert find_cycle({("a", "b"): [], ("b", "c"): [], ("c", "a"): []}) == ["a", "b", "c", "a"]
    assert find_cycle({("a", "b"): [], ("b", "c"): []}) is None
    nested = "def f():\n    from espnet2_stacking.tasks.distill import DistillTask\n"
    probe = tmp_path / "probe.py"
    probe.write_text(nested)
    assert [package_of(m) for _, m in module_imports(probe)] == ["tasks"]
