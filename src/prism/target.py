"""Target types, under the import path projects written for Prism 0.2.x use."""

from prism.targets import (
    JSON,
    MatplotlibPNG,
    NumpyTxt,
    PandasCsv,
    PrismTarget,
    PySparkParquet,
    Txt,
)

__all__ = [
    "JSON",
    "MatplotlibPNG",
    "NumpyTxt",
    "PandasCsv",
    "PrismTarget",
    "PySparkParquet",
    "Txt",
]
