from __future__ import annotations

import pytest

from prism.errors import TaskDefinitionError


def test_class_and_function_tasks_found(parse):
    (module,) = parse(
        {
            "mod": """
            import prism.task
            from prism.decorators import task

            class Extract(prism.task.PrismTask):
                def run(self, tasks, hooks):
                    return 1

            @task(retries=2)
            def load(tasks, hooks):
                return tasks.ref("other")

            def helper():
                return 3
            """
        }
    )
    assert [task.id for task in module.tasks] == ["mod.Extract", "mod.load"]
    assert [task.kind for task in module.tasks] == ["class", "function"]


def test_indirect_subclass_is_not_a_task(parse):
    (module,) = parse(
        {
            "mod": """
            from prism.task import PrismTask
            class Base(PrismTask):
                def run(self, tasks, hooks):
                    return 1
            class Child(Base):
                def run(self, tasks, hooks):
                    return 2
            """
        }
    )
    assert [task.name for task in module.tasks] == ["Base"]


def test_bare_task_decorator_accepted(parse):
    (module,) = parse(
        {
            "mod": (
                "from prism.decorators import task\n"
                "@task\n"
                "def f(tasks, hooks):\n"
                "  return 1\n"
            )
        }
    )
    assert module.tasks[0].id == "mod.f"


def test_refs_read_at_any_depth(parse):
    (module,) = parse(
        {
            "mod": """
            import prism.task
            class A(prism.task.PrismTask):
                def run(self, tasks, hooks):
                    data = [tasks.ref("x") for _ in range(2)]
                    return self.helper(tasks)
                def helper(self, tasks):
                    if True:
                        return tasks.ref(task="y.Y", local=False)
            """
        }
    )
    refs = module.tasks[0].refs
    assert [(ref.target, ref.local) for ref in refs] == [("x", False), ("y.Y", False)]
    assert refs[0].line == 5


def test_non_literal_ref_names_file_and_line(parse):
    source = """
    from prism.decorators import task
    @task()
    def f(tasks, hooks):
        name = "x"
        return tasks.ref(name)
    """
    with pytest.raises(TaskDefinitionError, match=r"tasks/mod\.py:6 .*string literal"):
        parse({"mod": source})


def test_syntax_error_names_file_and_line(parse):
    with pytest.raises(TaskDefinitionError, match=r"Syntax error in tasks/mod\.py:2"):
        parse({"mod": "x = 1\ndef (:\n"})


@pytest.mark.parametrize(
    "signature",
    [
        "def run(self, tasks)",
        "def run(self, tasks, hooks, extra)",
        "def run(self, *args)",
    ],
)
def test_class_run_with_wrong_parameters_rejected(parse, signature):
    source = (
        f"import prism.task\n"
        f"class A(prism.task.PrismTask):\n"
        f"    {signature}:\n"
        f"        return 1\n"
    )
    with pytest.raises(
        TaskDefinitionError, match=r"tasks/mod\.py:3.*\(self, tasks, hooks\)"
    ):
        parse({"mod": source})


def test_parameters_in_any_order_accepted(parse):
    source = (
        "import prism.task\n"
        "class A(prism.task.PrismTask):\n"
        "    def run(self, hooks, tasks):\n"
        "        return 1\n"
    )
    assert parse({"mod": source})[0].tasks[0].name == "A"


def test_class_without_run_rejected(parse):
    source = "import prism.task\nclass A(prism.task.PrismTask):\n    pass\n"
    with pytest.raises(TaskDefinitionError, match="has no run method"):
        parse({"mod": source})


def test_function_task_with_wrong_parameters_rejected(parse):
    source = "from prism.decorators import task\n@task()\ndef f(tasks):\n    return 1\n"
    with pytest.raises(TaskDefinitionError, match=r"tasks/mod\.py:3.*\(tasks, hooks\)"):
        parse({"mod": source})


def test_non_integer_retries_rejected(parse):
    source = (
        "from prism.decorators import task\n"
        "@task(retries='two')\n"
        "def f(tasks, hooks):\n"
        "    return 1\n"
    )
    with pytest.raises(TaskDefinitionError, match=r"tasks/mod\.py:2: retries must be"):
        parse({"mod": source})


def test_targets_detected_for_both_task_kinds(parse):
    (module,) = parse(
        {
            "mod": """
            import prism.task, prism.target
            from prism.decorators import task, target
            class A(prism.task.PrismTask):
                @prism.decorators.target(type=prism.target.Txt, loc="out/a.txt")
                def run(self, tasks, hooks):
                    return "a"
            @task(targets=[target(type=prism.target.Txt, loc=OUT / "b.txt")])
            def b(tasks, hooks):
                return "b"
            @task(targets=[])
            def c(tasks, hooks):
                return "c"
            """
        }
    )
    a, b, c = module.tasks
    assert a.target_locs == ("'out/a.txt'",)
    assert b.target_locs == ("OUT / 'b.txt'",)
    assert (a.has_targets, b.has_targets, c.has_targets) == (True, True, False)


def test_ref_with_too_many_arguments_rejected(parse):
    source = (
        "from prism.decorators import task\n"
        "@task()\n"
        "def f(tasks, hooks):\n"
        "    return tasks.ref('a', False, 3)\n"
    )
    with pytest.raises(TaskDefinitionError, match="at most two arguments"):
        parse({"mod": source})
