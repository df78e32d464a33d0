"""No import cycle among the project's modules (read from the source, imports inside functions included)."""

import ast

from conftest import ROOT

PACKAGES = ("pipeline", "stages", "slurm", "bench")


def import_graph() -> dict[str, set[str]]:
    mods = {
        ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): f
        for pkg in PACKAGES
        for f in (ROOT / pkg).rglob("*.py")
        if f.parts[-2:] != (pkg, "__init__.py")
    }
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {m for m in (node.module, *(f"{node.module}.{a.name}" for a in node.names)) if m in mods}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
        graph[name] = deps - {name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None."""
    state, path = {}, []

    def visit(v):
        state[v] = "open"
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == "open":
                return path[path.index(w) :] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = "done"
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_in_a_circle():
    graph = import_graph()
    assert {
        "pipeline.store",
        "pipeline.tasks",
        "pipeline.report",
        "stages.crossval",
        "pipeline.learners",
        "pipeline.learners.coteaching",
    } <= set(graph)
    assert "pipeline.learners.coteaching" in graph["pipeline.learners"]
    assert cycle(graph) is None, " -> ".join(cycle(graph))
