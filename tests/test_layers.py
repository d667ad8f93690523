"""The package's import graph points one way: each layer imports only the layers below it, the
leaves (`ser.rl`, `ser.serve`) import neither each other nor anything above, and no module
imports another module's private name. Read from the source with `ast` (lazy imports inside
functions count), so the layering cannot drift back unnoticed."""

from __future__ import annotations

import ast
from pathlib import Path

import ser

PACKAGE_DIR = Path(ser.__file__).parent

# Bottom to top. A module may import its own package and any package of a lower layer.
LAYERS: list[set[str]] = [
    {"ser", "ser.errors", "ser.atomic", "ser.project"},
    {"ser.config", "ser.callbacks", "ser.preprocess", "ser.augment"},
    {"ser.features"},
    # Siblings: the datamodule hands models tensors; neither imports the other.
    {"ser.data", "ser.models"},
    {"ser.evaluate"},
    {"ser.tracking"},
    # A model loaded by reference, streaming posteriors, early-decision policies.
    {"ser.inference"},
    # Entry points that compose configs and run the layers below (and `python -m` mains).
    {"ser.train", "ser.prepare", "<entry>"},
    {"ser.rl", "ser.serve"},
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layered unit a module belongs to: its subpackage (`ser.data.manifest` ->
    `ser.data`), or `<entry>` for a `python -m` entry point (`ser.evaluate.__main__`)."""
    if module.endswith(".__main__"):
        return "<entry>"
    parts = module.split(".")
    return ".".join(parts[:2])


def layer(module: str) -> int:
    name = unit(module)
    for index, units in enumerate(LAYERS):
        if name in units:
            return index
    raise AssertionError(f"{module} is in no layer; add {name} to LAYERS in {__file__}")


def imports(path: Path, module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every `ser` import in a file."""
    found = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target == "ser" or target.startswith("ser."):
                found.append((target, [alias.name for alias in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "ser" or alias.name.startswith("ser."):
                    found.append((alias.name, [], node.lineno))
    return found


def violations(root: Path) -> list[str]:
    """Every import that points up or sideways between layered units, or takes a private name
    from another module."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        for target, names, line in imports(path, module):
            where = f"{path.relative_to(root.parent)}:{line}"
            if unit(target) != unit(module) and layer(target) >= layer(module):
                problems.append(f"{where}: {module} imports {target}, not below it")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != module:
                problems.append(f"{where}: {module} imports private {private} of {target}")
    return problems


def test_the_package_imports_only_downwards_and_no_private_names() -> None:
    assert violations(PACKAGE_DIR) == []


def test_training_imports_neither_leaf() -> None:
    leaves = {"ser.rl", "ser.serve"}
    path = PACKAGE_DIR / "train.py"
    assert not [t for t, _, _ in imports(path, "ser.train") if unit(t) in leaves]


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_check_finds_upward_sideways_and_private_imports(tmp_path: Path) -> None:
    root = tmp_path / "ser"
    _write(root, "__init__.py", "")
    _write(root, "models/__init__.py", "from ser.data.datamodule import Batch\n")
    _write(root, "data/datamodule.py", "def f():\n    from .. import errors\n")
    _write(root, "serve/stream.py", "from ser.rl.policy import EarlyPolicy\n")
    _write(root, "rl/policy.py", "from ser.inference.recognizer import _checkpoint_of_run\n")
    _write(root, "evaluate/__main__.py", "from ser.train import build_datamodule\n")
    problems = violations(root)
    assert len(problems) == 4, problems  # the relative import of ser.errors is allowed
    assert "ser.models imports ser.data.datamodule, not below it" in problems[1]
    assert "ser.rl.policy imports private ['_checkpoint_of_run']" in problems[2]
    assert "ser.serve.stream imports ser.rl.policy, not below it" in problems[3]
    assert "ser.evaluate.__main__ imports ser.train, not below it" in problems[0]
