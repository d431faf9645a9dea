from __future__ import annotations

import pytest

from prism.errors import GraphError
from tests.engine.conftest import function_task


def test_chain_is_ordered_upstream_first(graph_of):
    graph = graph_of(
        {
            "c": function_task("c", "b"),
            "a": function_task("a"),
            "b": function_task("b", "a"),
        }
    )
    assert graph.order == ("a.a", "b.b", "c.c")
    assert graph.upstream["c.c"] == ("b.b",)
    assert graph.downstream["a.a"] == ("b.b",)


def test_independent_tasks_keep_definition_order(graph_of):
    graph = graph_of(
        {"x": function_task("x"), "a": function_task("a"), "m": function_task("m")}
    )
    assert graph.order == ("x.x", "a.a", "m.m")


def test_every_ref_form_resolves(graph_of):
    graph = graph_of(
        {
            "base": (
                "import prism.task\n"
                "class Base(prism.task.PrismTask):\n"
                "    def run(self, tasks, hooks):\n"
                "        return 1\n"
            ),
            "dir/nested": function_task("nested"),
            "user": """
import prism.task
class Helper(prism.task.PrismTask):
    def run(self, tasks, hooks):
        return 1
class User(prism.task.PrismTask):
    def run(self, tasks, hooks):
        tasks.ref("base")
        tasks.ref("base.Base")
        tasks.ref("base.py")
        tasks.ref("dir/nested")
        tasks.ref("dir/nested.nested")
        return tasks.ref("Helper", local=True)
""",
        }
    )
    assert set(graph.upstream["user.User"]) == {
        "base.Base",
        "dir/nested.nested",
        "user.Helper",
    }


def test_cycle_reports_each_task_and_file(graph_of):
    with pytest.raises(
        GraphError, match=r"cycle: (a\.a|b\.b|c\.c) -> .* -> .*"
    ) as caught:
        graph_of(
            {
                "a": function_task("a", "c"),
                "b": function_task("b", "a"),
                "c": function_task("c", "b"),
            }
        )
    message = str(caught.value)
    for task_id in ("a.a", "b.b", "c.c"):
        assert task_id in message
    assert "tasks/a.py" in message


def test_self_reference_rejected(graph_of):
    source = (
        "import prism.task\n"
        "class A(prism.task.PrismTask):\n"
        "    def run(self, tasks, hooks):\n"
        "        return tasks.ref('A', local=True)\n"
    )
    with pytest.raises(GraphError, match=r"tasks/a\.py:4.*self-references"):
        graph_of({"a": source})


def test_same_module_ref_without_local_rejected(graph_of):
    with pytest.raises(GraphError, match="local=True"):
        graph_of({"a": function_task("a", "a")})


def test_unknown_module_suggests_close_name(graph_of):
    with pytest.raises(
        GraphError, match=r"tasks/b\.py:4.*unknown module 'extrct'[\s\S]*'extract'"
    ):
        graph_of(
            {"extract": function_task("extract"), "b": function_task("b", "extrct")}
        )


def test_unknown_task_in_module_rejected(graph_of):
    with pytest.raises(GraphError, match="module 'a' has no task 'Nope'"):
        graph_of({"a": function_task("a"), "b": function_task("b", "a.Nope")})


def test_ambiguous_module_ref_names_its_tasks(graph_of):
    two = (
        "from prism.decorators import task\n"
        "@task()\n"
        "def x(tasks, hooks):\n"
        "    return 1\n"
        "@task()\n"
        "def y(tasks, hooks):\n"
        "    return 2\n"
    )
    with pytest.raises(GraphError, match=r"several tasks \(two\.x, two\.y\)"):
        graph_of({"two": two, "b": function_task("b", "two")})


def test_project_without_tasks_rejected(graph_of):
    with pytest.raises(GraphError, match="no tasks"):
        graph_of({"helper": "def f():\n    return 1\n"})


def test_ancestors_and_descendants(graph_of):
    graph = graph_of(
        {
            "a": function_task("a"),
            "b": function_task("b", "a"),
            "c": function_task("c", "b"),
            "d": function_task("d"),
        }
    )
    assert graph.ancestors(["c.c"]) == {"a.a", "b.b"}
    assert graph.descendants(["a.a"]) == {"b.b", "c.c"}
    assert graph.descendants(["d.d"]) == set()
