"""survbench: a benchmark and evaluation harness for multimodal cancer survival prediction.

The public face for plugin authors: ``Method``, ``Prediction``, ``RunContext``, ``Cohort`` and
``register_method``; for metric authors: ``MetricSpec``, ``SummarySpec``, ``ScoreInputs`` and
``register_metric``. Importing ``bench`` is light (no torch, no method modules).
"""
from importlib.metadata import PackageNotFoundError, version

from bench.data.cohort import Cohort
from bench.errors import BenchInputError
from bench.method import Method, Prediction, RunContext
from bench.metric_registry import MetricSpec, ScoreInputs, SummarySpec, register_metric
from bench.registry import register_method

try:
    __version__ = version("survbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["BenchInputError", "Cohort", "Method", "MetricSpec", "Prediction", "RunContext", "ScoreInputs",
           "SummarySpec", "register_method", "register_metric", "__version__"]
