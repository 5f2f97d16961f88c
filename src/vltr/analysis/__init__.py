"""Analysis of finished runs, read from their files (``metrics.json``, ``per_class_ap_*.csv``,
``.hydra/``), never from W&B: the logic behind ``vltr-report`` and the notebooks.

* :mod:`vltr.analysis.runs`: find and load runs and sweeps;
* :mod:`vltr.analysis.tables`: the papers' method table and the imbalance-ratio x method table,
  as Markdown or CSV;
* :mod:`vltr.analysis.report`: ``vltr-report``'s table report and its paired comparison;
* :mod:`vltr.analysis.dataset`: a store's class distribution;
* :mod:`vltr.analysis.plots`: the notebooks' figures (matplotlib, imported on first use).
"""

from vltr.analysis.dataset import ClassDistribution, class_distribution
from vltr.analysis.runs import RunResult, find_run_dirs, load_per_class, load_run, load_runs
from vltr.analysis.tables import method_table, sweep_table, to_csv, to_markdown

__all__ = [
    "ClassDistribution",
    "RunResult",
    "class_distribution",
    "find_run_dirs",
    "load_per_class",
    "load_run",
    "load_runs",
    "method_table",
    "sweep_table",
    "to_csv",
    "to_markdown",
]
