"""The package's layers: imports run one way, from the bottom up, and never in a circle.

Every ``import`` of every module is read (top-level and inside functions, since
a lazy import is still a dependency), mapped to the layer of the module it
names, and checked against the layer of the importer.
"""

import ast
from pathlib import Path

import pytest

import text2image

PACKAGE = Path(text2image.__file__).parent

# The first prefix that matches a module's dotted name (after ``text2image.``) gives its layer.
LAYERS = [
    (1, ("world", "text", "profiles", "paths", "lang")),
    (2, ("models",)),
    (3, ("pipelines", "methods")),
    (4, ("recipes", "evaluate", "train", "checkpoints", "pretrained")),
    (5, ("charts", "plots", "tables", "book", "cli", "__main__", "bench", "about")),
]


def layer(module: str) -> int:
    parts = module.split(".")
    if parts == ["text2image"]:
        return 0  # the root package holds only its version and docstring
    for rank, prefixes in LAYERS:
        if parts[1] in prefixes:
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    parts = ["text2image", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    return imports_in(path.read_text(), module, path.name == "__init__.py")


def imports_in(source: str, module: str, is_package: bool = False) -> set[str]:
    """The project modules that ``source`` (the text of ``module``) imports; ``from pkg import name``
    counts the submodule when one exists."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("text2image")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("text2image"):
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_from_the_bottom_up(module):
    upward = sorted(m for m in GRAPH[module] if layer(m) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports from above: {upward}"


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module, path):
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])


def test_the_walk_sees_lazy_relative_and_submodule_imports():
    """A model module that imported a recipe, even inside a function or relatively, would be caught."""
    source = ("from text2image.world import tensors\n"
              "def f():\n    from ..recipes import autoencoders\n    import text2image.charts.world\n")
    found = imports_in(source, "text2image.models.fake")
    assert found == {"text2image.world.tensors", "text2image.recipes.autoencoders", "text2image.charts.world"}
    assert sorted(layer(m) for m in found if layer(m) > layer("text2image.models.fake")) == [4, 5]
