"""A class task: its output is saved to output/hello_world.txt."""

import prism_project

import prism.decorators
import prism.target
import prism.task


class ExampleTask(prism.task.PrismTask):
    @prism.decorators.target(
        type=prism.target.Txt, loc=prism_project.OUTPUT / "hello_world.txt"
    )
    def run(self, tasks, hooks):
        prism_project.PRISM_LOGGER.info("Writing a greeting")
        return "Hello, world!"
