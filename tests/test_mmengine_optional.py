"""MMEngine is a test-time reference, never a dependency: without it the parity tests skip.

Every test module reaches MMEngine through ``pytest.importorskip``; a plain ``import mmengine``
(at the top or inside a test) would fail instead of skipping where MMEngine is not installed.
"""
import ast
import pathlib

TESTS = pathlib.Path(__file__).parent


def _is_skip_guard(node: ast.AST) -> bool:
    """``pytest.importorskip("mmengine...")`` (anywhere in a statement)."""
    return any(isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
               and call.func.attr == "importorskip" and call.args
               and isinstance(call.args[0], ast.Constant)
               and str(call.args[0].value).split(".")[0] == "mmengine"
               for call in ast.walk(node))


def _mmengine_names(node: ast.AST) -> list[str]:
    names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
        [node.module or ""] if isinstance(node, ast.ImportFrom) else []
    return [name for name in names if name.split(".")[0] == "mmengine"]


def _unguarded(body: list[ast.stmt], guarded: bool, where: str) -> list[str]:
    """Imports of mmengine in ``body`` (and the functions in it) that no earlier
    importorskip of MMEngine, in the same or an enclosing scope, guards."""
    found = []
    for statement in body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found += _unguarded(statement.body, guarded, where)
            continue
        found += [f"{where}:{statement.lineno} imports {name}"
                  for node in ast.walk(statement) for name in _mmengine_names(node)
                  if not guarded]
        guarded = guarded or _is_skip_guard(statement)
    return found


def _plain_mmengine_imports(path: pathlib.Path, root: pathlib.Path = TESTS.parent) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return _unguarded(tree.body, False, str(path.relative_to(root)))


def test_tests_reach_mmengine_only_through_importorskip():
    assert [hit for path in sorted(TESTS.rglob("*.py"))
            for hit in _plain_mmengine_imports(path)] == []


def test_the_check_tells_a_plain_import_from_a_guarded_one(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import pytest\n\n\ndef test_plain():\n"
                     "    from mmengine.optim import OptimWrapper\n\n\n"
                     "def test_guarded():\n    pytest.importorskip('mmengine.optim')\n"
                     "    from mmengine.optim import OptimWrapper\n")
    assert _plain_mmengine_imports(probe, tmp_path) == ["probe.py:5 imports mmengine.optim"]
