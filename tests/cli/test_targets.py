"""End-to-end tests of targets, target reloading and `done()`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import events, finished_by_task, ran_tasks, recording_task

JSON = ("--log-format", "json")

FIGURE_HELPER = """
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def make_figure():
    figure, axes = plt.subplots()
    axes.plot([1, 2], [3, 4])
    return figure
"""

# (target class, location, imports and helpers, returned value, check on reload,
# expected text of that check)
RELOAD_CASES = [
    ("Txt", "output/a.txt", "", "'hello'", "value", "hello"),
    ("JSON", "output/a.json", "", "{'n': 3}", "value['n']", "3"),
    (
        "PandasCsv",
        "output/a.csv",
        "import pandas as pd\n",
        "pd.DataFrame({'n': [3, 4]})",
        "value['n'].sum()",
        "7",
    ),
    (
        "NumpyTxt",
        "output/a.txt",
        "import numpy as np\n",
        "np.array([1.5, 2.5])",
        "value.sum()",
        "4.0",
    ),
    (
        "MatplotlibPNG",
        "output/a.png",
        FIGURE_HELPER,
        "make_figure()",
        "value.size[0] > 0",
        "True",
    ),
]


def producer_module(target_class: str, loc: str, header: str, value: str) -> str:
    return (
        f"{header}\n"
        "from prism.decorators import target\n"
        f"from prism.target import {target_class}\n"
        "from prism.task import PrismTask\n"
        "\n"
        "\n"
        "class A(PrismTask):\n"
        f"    @target(type={target_class}, loc={loc!r})\n"
        "    def run(self, tasks, hooks):\n"
        f"        return {value}\n"
    )


def consumer_module(check: str) -> str:
    return (
        "from pathlib import Path\n"
        "\n"
        "from prism.task import PrismTask\n"
        "\n"
        "\n"
        "class B(PrismTask):\n"
        "    def run(self, tasks, hooks):\n"
        "        value = tasks.ref('a')\n"
        f"        Path('check.txt').write_text(str({check}))\n"
        "        return 'B'\n"
    )


def test_txt_target_writes_text(make_project, run_prism):
    project = make_project({"tasks/a.py": recording_task("A", target="output/a.txt")})

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/a.txt").read_text() == "A"


def test_json_target_passes_save_kwargs(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.decorators import target
                from prism.target import JSON
                from prism.task import PrismTask


                class A(PrismTask):
                    @target(type=JSON, loc="output/a.json", indent=2)
                    def run(self, tasks, hooks):
                        return {"rows": [1, 2]}
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    text = (project / "output/a.json").read_text()
    assert json.loads(text) == {"rows": [1, 2]}
    assert '\n  "rows"' in text


def test_pandas_csv_target_writes_frame(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                import pandas as pd

                from prism.decorators import target
                from prism.target import PandasCsv
                from prism.task import PrismTask


                class A(PrismTask):
                    @target(type=PandasCsv, loc="output/a.csv", index=False)
                    def run(self, tasks, hooks):
                        return pd.DataFrame({"x": [1, 2], "y": ["p", "q"]})
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    frame = pd.read_csv(project / "output/a.csv")
    assert list(frame.columns) == ["x", "y"]
    assert frame["x"].tolist() == [1, 2]


def test_numpy_txt_target_writes_array(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                import numpy as np

                from prism.decorators import target
                from prism.target import NumpyTxt
                from prism.task import PrismTask


                class A(PrismTask):
                    @target(type=NumpyTxt, loc="output/a.txt")
                    def run(self, tasks, hooks):
                        return np.array([[1.0, 2.0], [3.0, 4.0]])
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    saved = np.loadtxt(project / "output/a.txt")
    assert saved.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_matplotlib_png_target_writes_png(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": FIGURE_HELPER
            + """
from prism.decorators import target
from prism.target import MatplotlibPNG
from prism.task import PrismTask


class A(PrismTask):
    @target(type=MatplotlibPNG, loc="output/a.png")
    def run(self, tasks, hooks):
        return make_figure()
"""
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/a.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    ("target_class", "loc", "header", "value", "check", "expected"),
    RELOAD_CASES,
    ids=[case[0] for case in RELOAD_CASES],
)
def test_target_reloads_for_selected_downstream(
    make_project, run_prism, target_class, loc, header, value, check, expected
):
    project = make_project(
        {
            "tasks/a.py": producer_module(target_class, loc, header, value),
            "tasks/b.py": consumer_module(check),
        }
    )
    first = run_prism("run", "-t", "a", cwd=project)
    assert first.returncode == 0, first.stdout + first.stderr

    result = run_prism("run", "-t", "b", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "check.txt").read_text() == expected


def test_target_creates_missing_parent_folders(make_project, run_prism):
    project = make_project(
        {"tasks/a.py": recording_task("A", target="output/deep/er/a.txt")}
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/deep/er/a.txt").read_text() == "A"


def test_stacked_targets_map_tuple_top_down(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.decorators import target
                from prism.target import Txt
                from prism.task import PrismTask


                class A(PrismTask):
                    @target(type=Txt, loc="output/first.txt")
                    @target(type=Txt, loc="output/second.txt")
                    def run(self, tasks, hooks):
                        return "one", "two"
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/first.txt").read_text() == "one"
    assert (project / "output/second.txt").read_text() == "two"


def test_decorated_targets_follow_list_order(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.decorators import target, task
                from prism.target import JSON, Txt


                @task(
                    targets=[
                        target(type=Txt, loc="output/first.txt"),
                        target(type=JSON, loc="output/second.json"),
                    ]
                )
                def a(tasks, hooks):
                    return "one", {"two": 2}
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/first.txt").read_text() == "one"
    assert json.loads((project / "output/second.json").read_text()) == {"two": 2}


def test_stacked_targets_reload_as_tuple(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.decorators import target
                from prism.target import Txt
                from prism.task import PrismTask


                class A(PrismTask):
                    @target(type=Txt, loc="output/first.txt")
                    @target(type=Txt, loc="output/second.txt")
                    def run(self, tasks, hooks):
                        return "one", "two"
            """,
            "tasks/b.py": consumer_module(
                "type(value).__name__ + ':' + ','.join(value)"
            ),
            "output/first.txt": "uno",
            "output/second.txt": "dos",
        }
    )

    result = run_prism("run", "-t", "b", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "check.txt").read_text() == "tuple:uno,dos"


def test_target_iterator_saves_each_item(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.decorators import target_iterator
                from prism.target import Txt
                from prism.task import PrismTask


                class A(PrismTask):
                    @target_iterator(type=Txt, loc="output/parts")
                    def run(self, tasks, hooks):
                        return {"x.txt": "X", "y.txt": "Y"}
            """
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "output/parts/x.txt").read_text() == "X"
    assert (project / "output/parts/y.txt").read_text() == "Y"


def test_target_iterator_output_is_folder(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": """
                from prism.decorators import target_iterator
                from prism.target import Txt
                from prism.task import PrismTask


                class A(PrismTask):
                    @target_iterator(type=Txt, loc="output/parts")
                    def run(self, tasks, hooks):
                        return {"x.txt": "X"}
            """,
            "tasks/b.py": consumer_module("Path(value).resolve()"),
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    expected = (project / "output/parts").resolve()
    assert (project / "check.txt").read_text() == str(expected)


CUSTOM_TARGET = """
from pathlib import Path

from prism.decorators import target
from prism.target import PrismTarget
from prism.task import PrismTask


class Shouted(PrismTarget):
    def __init__(self, obj, loc, hooks):
        self.obj = obj
        self.loc = loc
        self.hooks = hooks

    def save(self, **kwargs):
        Path(self.loc).write_text(self.obj.upper() + kwargs["suffix"])

    @classmethod
    def open(cls, loc, hooks):
        return "opened:" + Path(loc).read_text()


class A(PrismTask):
    @target(type=Shouted, loc="shouted.txt", suffix="!")
    def run(self, tasks, hooks):
        return "quiet"
"""


def test_custom_target_save_receives_kwargs(make_project, run_prism):
    project = make_project({"tasks/a.py": CUSTOM_TARGET})

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "shouted.txt").read_text() == "QUIET!"


def test_custom_target_open_supplies_reload(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": CUSTOM_TARGET,
            "tasks/b.py": consumer_module("value"),
            "shouted.txt": "LOUD",
        }
    )

    result = run_prism("run", "-t", "b", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "check.txt").read_text() == "opened:LOUD"


DONE_WITHOUT_TARGET = """
from prism.task import PrismTask


class A(PrismTask):
    def done(self, tasks, hooks):
        return True

    def run(self, tasks, hooks):
        with open("ran.txt", "a") as log:
            log.write("A\\n")
        return "A"
"""

DONE_WITH_TARGET = """
from pathlib import Path

from prism.decorators import target
from prism.target import Txt
from prism.task import PrismTask


class A(PrismTask):
    def done(self, tasks, hooks):
        return Path("output/a.txt").exists()

    @target(type=Txt, loc="output/a.txt")
    def run(self, tasks, hooks):
        with open("ran.txt", "a") as log:
            log.write("A\\n")
        return "fresh"
"""


def test_done_task_body_does_not_run(make_project, run_prism):
    project = make_project({"tasks/a.py": DONE_WITHOUT_TARGET})

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == []


def test_done_task_reports_skipped_done(make_project, run_prism):
    project = make_project({"tasks/a.py": DONE_WITHOUT_TARGET})

    result = run_prism("run", *JSON, cwd=project)

    finished = finished_by_task(events(result.stdout))["a.A"]
    assert finished["status"] == "skipped"
    assert finished["reason"] == "done"
    assert finished["attempts"] == 0


def test_done_task_output_loads_from_target(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": DONE_WITH_TARGET,
            "tasks/b.py": recording_task("B", "a", target="output/b.txt"),
            "output/a.txt": "stored",
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["B"]
    assert (project / "output/b.txt").read_text() == "stored+B"


def test_done_task_lets_downstream_run(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": DONE_WITH_TARGET,
            "tasks/b.py": recording_task("B", "a"),
            "output/a.txt": "stored",
        }
    )

    result = run_prism("run", *JSON, cwd=project)

    finished = finished_by_task(events(result.stdout))
    assert finished["a.A"]["status"] == "skipped"
    assert finished["b.B"]["status"] == "done"


def test_done_false_runs_task_body(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": DONE_WITH_TARGET,
            "tasks/b.py": recording_task("B", "a", target="output/b.txt"),
        }
    )

    result = run_prism("run", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["A", "B"]
    assert (project / "output/b.txt").read_text() == "fresh+B"


def test_full_refresh_runs_done_task(make_project, run_prism):
    project = make_project(
        {
            "tasks/a.py": DONE_WITH_TARGET,
            "tasks/b.py": recording_task("B", "a", target="output/b.txt"),
            "output/a.txt": "stored",
        }
    )

    result = run_prism("run", "--full-refresh", cwd=project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert ran_tasks(project) == ["A", "B"]
    assert (project / "output/a.txt").read_text() == "fresh"
    assert (project / "output/b.txt").read_text() == "fresh+B"
