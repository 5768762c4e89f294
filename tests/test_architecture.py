"""The package's layers: every import points down (or within a layer), no module imports a command, no cycles
between packages. The picture is in the README's "Architecture" section."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "atnet_jax"

# Bottom to top. A module may import modules of its own layer or of a layer below.
LAYERS: list[tuple[str, ...]] = [
    ("atnet_jax", "atnet_jax.errors"),
    ("atnet_jax.interrupts",),
    ("atnet_jax.models",),
    ("atnet_jax.io",),
    ("atnet_jax.interaction",),
    ("atnet_jax.inference",),
    ("atnet_jax.evaluation", "atnet_jax.training", "atnet_jax.data"),
    ("atnet_jax.demo", "atnet_jax.cli"),
    ("atnet_jax.infer", "atnet_jax.evaluate", "atnet_jax.train", "atnet_jax.convert", "atnet_jax.scribble",
     "atnet_jax.studio", "atnet_jax.data.synthetic.__main__", "atnet_jax.__main__"),
]
COMMANDS = LAYERS[-1]
# Within the layer of evaluation and training, training reads its data; evaluation and training stay apart.
SIDEWAYS = {("atnet_jax.training", "atnet_jax.data")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The layer entry a module belongs to (the longest listed prefix)."""
    best = ""
    for layer in LAYERS:
        for name in layer:
            if (module == name or module.startswith(name + ".")) and len(name) > len(best):
                best = name
    assert best, f"{module} is in no layer: add it to LAYERS"
    return best


def _rank(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def _imports() -> dict[str, set[str]]:
    """Every module of the package -> the atnet_jax modules it imports (at the top or inside functions)."""
    out: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("atnet_jax")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("atnet_jax"):
                for alias in node.names:  # "from atnet_jax.io import safe" imports atnet_jax.io.safe
                    candidate = f"{node.module}.{alias.name}"
                    is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                        PACKAGE.parent / candidate.replace(".", "/")).is_dir()
                    found.add(candidate if is_module else node.module)
        out[module] = found
    return out


def test_every_import_points_down_a_layer_or_within_one():
    wrong = []
    for module, imported in _imports().items():
        unit = _unit(module)
        for target in imported:
            other = _unit(target)
            if other == unit or target == "atnet_jax":
                continue
            if _rank(other) > _rank(unit):
                wrong.append(f"{module} -> {target} (up: {unit} is below {other})")
            elif _rank(other) == _rank(unit) and (unit, other) not in SIDEWAYS:
                wrong.append(f"{module} -> {target} (sideways: {unit} and {other})")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_a_command():
    wrong = [f"{module} -> {target}" for module, imported in _imports().items() for target in imported
             if _unit(target) in COMMANDS and not module.startswith(_unit(target))]
    assert not wrong, "\n".join(wrong)


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for module, imported in _imports().items():
        unit = _unit(module)
        graph.setdefault(unit, set()).update(u for u in map(_unit, imported) if u != unit)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    cycles = [f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a, set())]
    assert not cycles, cycles


def test_the_check_sees_the_imports_it_should():
    """The checker itself: known imports are found, inside functions too."""
    imports = _imports()
    assert "atnet_jax.inference.session" in imports["atnet_jax.evaluation.protocol"]
    assert "atnet_jax.io.davis" in imports["atnet_jax.infer"]  # imported inside a function
    assert _rank(_unit("atnet_jax.io.safe")) < _rank(_unit("atnet_jax.inference.session"))
