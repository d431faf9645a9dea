"""A function task that uses the output of the class task."""

import prism_project

import prism.target
from prism.decorators import target, task


@task(
    targets=[
        target(type=prism.target.Txt, loc=prism_project.OUTPUT / "hello_world_loud.txt")
    ]
)
def example_task(tasks, hooks):
    greeting = tasks.ref("class_task")
    return greeting.upper()
