"""The package's shape: no import circles, models that import neither features nor data, and models saved by
hep2 0.1.0 (whose pipeline modules sat in hep2 itself) still load."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import hep2
from hep2.pipeline import methods, neighbours
from hep2.presets import get_preset
from hep2.training import load_checkpoint, save_checkpoint

SRC = Path(hep2.__file__).resolve().parent


def import_graph() -> dict[str, set[str]]:
    """Each module of hep2 -> the modules of hep2 it imports, at the top or inside a function."""
    names = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in names.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = (
                    ".".join(package[: len(package) - node.level + 1] + [node.module or ""])
                    if node.level
                    else node.module or ""
                )
                base = base.rstrip(".")
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    deps.add(full if full in names else base)
            elif isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names}
        graph[name] = {d for d in deps if d in names and d != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert {"hep2.pipeline.runner", "hep2.pipeline.predict", "hep2.models.dcae"} <= set(graph)
    assert "hep2.pipeline.runfolder" in graph["hep2.pipeline.runner"]  # the graph sees imports
    assert circles(graph) == []
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]  # and finds one


def test_models_import_neither_features_nor_data_and_lower_stages_no_pipeline():
    graph = import_graph()
    for name, deps in graph.items():
        if name.startswith("hep2.models"):
            assert not {d for d in deps if d.startswith(("hep2.features", "hep2.data"))}, name
        if name.startswith(("hep2.models", "hep2.data", "hep2.features")):
            assert not {d for d in deps if d.startswith(("hep2.pipeline", "hep2.cli", "hep2.web"))}, name


def test_a_model_pickled_under_the_0_1_0_module_names_loads(tmp_path, monkeypatch):
    method = methods.get_method("shape-index", get_preset("tiny"))
    saved = {"features": method, "neighbours": neighbours.BatchNeighbours(3)}
    # 0.1.0's names: hep2.methods.ShapeIndex, hep2.ensemble.BatchNeighbours
    monkeypatch.setitem(sys.modules, "hep2.methods", methods)
    monkeypatch.setitem(sys.modules, "hep2.ensemble", neighbours)
    monkeypatch.setattr(type(method), "__module__", "hep2.methods")
    monkeypatch.setattr(neighbours.BatchNeighbours, "__module__", "hep2.ensemble")
    save_checkpoint(tmp_path / "pipeline.pt", saved)
    monkeypatch.undo()
    raw = (tmp_path / "pipeline.pt").read_bytes()
    assert b"hep2.methods" in raw and b"hep2.ensemble" in raw
    assert "hep2.methods" not in sys.modules and "hep2.ensemble" not in sys.modules
    back = load_checkpoint(tmp_path / "pipeline.pt")
    assert type(back["features"]) is methods.ShapeIndex and back["features"].cfg == get_preset("tiny")
    assert type(back["neighbours"]) is neighbours.BatchNeighbours and back["neighbours"].k == 3


def test_a_pickle_naming_a_module_that_never_existed_is_a_clear_error(tmp_path, monkeypatch):
    import types

    fake = types.ModuleType("hep2.nowhere")

    class Gone:
        pass

    Gone.__module__, Gone.__qualname__ = "hep2.nowhere", "Gone"
    fake.Gone = Gone
    monkeypatch.setitem(sys.modules, "hep2.nowhere", fake)
    save_checkpoint(tmp_path / "old.pt", {"x": Gone()})
    monkeypatch.undo()
    with pytest.raises(hep2.Hep2Error, match=r"cannot load checkpoint .*old\.pt .*damaged or from another version"):
        load_checkpoint(tmp_path / "old.pt")
