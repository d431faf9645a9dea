from __future__ import annotations

import pytest

from prism.engine.selection import plan_run
from prism.errors import GraphError
from tests.engine.conftest import function_task

TARGETED = (
    "import prism.target\nfrom prism.decorators import task, target\n"
    "@task(targets=[target(type=prism.target.Txt, loc='out/{name}.txt')])\n"
    "def {name}(tasks, hooks):\n{body}    return 'x'\n"
)


def targeted_task(name: str, *refs: str) -> str:
    body = "".join(f"    tasks.ref({ref!r})\n" for ref in refs)
    return TARGETED.replace("{name}", name).replace("{body}", body)


@pytest.fixture
def diamond(graph_of):
    # a -> b -> d, a -> c -> d, and e -> c
    return graph_of(
        {
            "a": targeted_task("a"),
            "b": targeted_task("b", "a"),
            "c": targeted_task("c", "a", "e"),
            "d": targeted_task("d", "b", "c"),
            "e": targeted_task("e"),
        }
    )


def test_no_selector_runs_everything(diamond):
    plan = plan_run(diamond)
    assert plan.execute == diamond.order
    assert plan.load_only == frozenset()


def test_selected_task_reads_upstream_from_targets(diamond):
    plan = plan_run(diamond, ["d"])
    assert plan.execute == ("d.d",)
    assert plan.load_only == {"b.b", "c.c"}


def test_all_upstream_runs_ancestors(diamond):
    plan = plan_run(diamond, ["c.c"], all_upstream=True)
    assert set(plan.execute) == {"a.a", "e.e", "c.c"}
    assert plan.load_only == frozenset()


def test_all_downstream_includes_other_ancestors(diamond):
    plan = plan_run(diamond, ["b"], all_downstream=True)
    # d also needs c, and c needs e: all of them run, so nothing is missing.
    assert set(plan.execute) == {"a.a", "b.b", "c.c", "d.d", "e.e"}
    assert plan.load_only == frozenset()


def test_folder_selector_takes_direct_modules_only(graph_of):
    graph = graph_of(
        {
            "dir/one": function_task("one"),
            "dir/two": function_task("two"),
            "dir/deeper/three": function_task("three"),
            "top": function_task("top"),
        }
    )
    plan = plan_run(graph, ["dir/*"])
    assert set(plan.execute) == {"dir/one.one", "dir/two.two"}


def test_upstream_without_target_rejected_up_front(graph_of):
    graph = graph_of({"a": function_task("a"), "b": function_task("b", "a")})
    with pytest.raises(
        GraphError, match=r"b\.b needs the output of a\.a[\s\S]*--all-upstream"
    ):
        plan_run(graph, ["b"])


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("nope", "names no task module or task"),
        ("a.Nope", "module 'a' has no task 'Nope'"),
        ("dir", r"names a folder[\s\S]*dir/\*"),
        ("tasks/a", "relative to the tasks/ folder"),
        ("missing/*", "no task modules directly inside"),
    ],
)
def test_bad_selectors_rejected(graph_of, selector, message):
    graph = graph_of({"a": function_task("a"), "dir/x": function_task("x")})
    with pytest.raises(GraphError, match=message):
        plan_run(graph, [selector])


def test_py_suffix_selector_accepted(graph_of, caplog):
    graph = graph_of({"a": function_task("a")})
    assert plan_run(graph, ["a.py"]).execute == ("a.a",)
    assert "deprecated" in caplog.text
