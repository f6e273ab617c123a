"""Every `from <akd package> import name` in the repository, lazy ones inside functions included,
names something that exists: a module moved or a name renamed breaks here, not in the one
command that imports it late (a grid report once failed that way after a move)."""
import ast
import importlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("cache_schema", "common", "inference", "stages", "study", "model_tools", "pipeline")


def test_every_akd_import_resolves():
    missing = []
    for folder in (*PACKAGES, "benchmarks", "tests"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                        and node.module.split(".")[0] in PACKAGES):
                    continue
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                try:
                    module = importlib.import_module(node.module)
                except ImportError as exc:
                    missing.append(f"{where}: {node.module} ({exc})")
                    continue
                for alias in node.names:
                    if alias.name != "*" and not hasattr(module, alias.name):
                        try:
                            importlib.import_module(f"{node.module}.{alias.name}")
                        except ImportError:
                            missing.append(f"{where}: {node.module}.{alias.name}")
    assert not missing, missing
