"""Persisting task outputs to files and reading them back.

A target type is a `PrismTarget` subclass: `save` writes the object to `loc` and
the class method `open` reads it back. Third-party libraries (pandas, NumPy,
Matplotlib, Pillow, PySpark) are imported only when a target of that type is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = [
    "JSON",
    "MatplotlibPNG",
    "NumpyTxt",
    "PandasCsv",
    "PrismTarget",
    "PySparkParquet",
    "Txt",
]


class PrismTarget:
    """Base class of target types; subclass it for a custom target.

    Implementers provide:

    - `save(self, **kwargs)`: write `self.obj` to `self.loc`, passing `kwargs` (the
      extra arguments of the `target(...)` decorator) to the writer.
    - `open(cls, loc, hooks)`: a class method that reads the file at `loc` back.

    Prism creates the parent folders of `loc` before calling `save`.
    """

    def __init__(self, obj: Any, loc: str | Path, hooks: Any) -> None:
        self.obj = obj
        self.loc = loc
        self.hooks = hooks

    def save(self, **kwargs: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement save()")

    @classmethod
    def open(cls, loc: str | Path, hooks: Any) -> Any:
        raise NotImplementedError(f"{cls.__name__} does not implement open()")


class Txt(PrismTarget):
    """A text file; the task must return a `str`."""

    def save(self, **kwargs: Any) -> None:
        if not isinstance(self.obj, str):
            raise TypeError(
                f"Txt target {self.loc} needs a str, but the task returned "
                f"{type(self.obj).__name__}; return a str or use another target type"
            )
        Path(self.loc).write_text(self.obj, encoding=kwargs.get("encoding", "utf-8"))

    @classmethod
    def open(cls, loc: str | Path, hooks: Any) -> str:
        return Path(loc).read_text(encoding="utf-8")


class JSON(PrismTarget):
    """A JSON file; save arguments go to `json.dumps`."""

    def save(self, **kwargs: Any) -> None:
        Path(self.loc).write_text(json.dumps(self.obj, **kwargs), encoding="utf-8")

    @classmethod
    def open(cls, loc: str | Path, hooks: Any) -> Any:
        return json.loads(Path(loc).read_text(encoding="utf-8"))


class PandasCsv(PrismTarget):
    """A CSV file written with `DataFrame.to_csv` and read with `pandas.read_csv`.

    As in Prism 0.2.x, the index is written by default and so comes back as a column.
    """

    def save(self, **kwargs: Any) -> None:
        self.obj.to_csv(self.loc, **kwargs)

    @classmethod
    def open(cls, loc: str | Path, hooks: Any) -> Any:
        import pandas

        return pandas.read_csv(loc)


class NumpyTxt(PrismTarget):
    """A text file written with `numpy.savetxt` and read with `numpy.loadtxt`."""

    def save(self, **kwargs: Any) -> None:
        import numpy

        numpy.savetxt(self.loc, self.obj, **kwargs)

    @classmethod
    def open(cls, loc: str | Path, hooks: Any) -> Any:
        import numpy

        return numpy.loadtxt(loc)


class MatplotlibPNG(PrismTarget):
    """A PNG written with `Figure.savefig` and read back as a Pillow image."""

    def save(self, **kwargs: Any) -> None:
        self.obj.savefig(self.loc, **kwargs)

    @classmethod
    def open(cls, loc: str | Path, hooks: Any) -> Any:
        from PIL import Image

        return Image.open(loc)


class PySparkParquet(PrismTarget):
    """A Parquet folder written by a Spark DataFrame and read with the run's session."""

    def save(self, **kwargs: Any) -> None:
        self.obj.write.parquet(str(self.loc), **kwargs)

    @classmethod
    def open(cls, loc: str | Path, hooks: Any) -> Any:
        session = _find_spark_session(hooks)
        return session.read.parquet(str(loc))


def _find_spark_session(hooks: Any) -> Any:
    from pyspark.sql import SparkSession

    for value in vars(hooks).values() if hooks is not None else ():
        if isinstance(value, SparkSession):
            return value
    profile_session = _profile_spark_session(hooks)
    if profile_session is not None:
        return profile_session
    active = SparkSession.getActiveSession()
    if active is None:
        raise RuntimeError(
            "PySparkParquet needs a SparkSession to read its output, and none is "
            "running; add a pyspark adapter to profile.yml"
        )
    return active


def _profile_spark_session(hooks: Any) -> Any:
    # The profile's pyspark adapter builds its session on first use, so no task
    # may have asked for it yet when an upstream's output is read back.
    adapters_of_type = getattr(hooks, "adapters_of_type", None)
    if not callable(adapters_of_type):
        return None
    for name in adapters_of_type("pyspark"):
        session = getattr(hooks.adapter(name), "session", None)
        if callable(session):
            return session()
    return None
