"""The W&B workspace for vltr runs, built in code with ``wandb-workspaces``.

:func:`build_workspace` returns the workspace object (no network); ``vltr-report dashboard``
prints what it holds and, with ``--save``, creates it in the W&B project (network and a login
needed). The panels read what every ``logger=wandb`` run logs (docs/wandb.md):

* **val mAP by method**: per-epoch ``val/mAP``, ``val/mAP_head``, ``val/mAP_medium``,
  ``val/mAP_tail``, runs grouped by method (``run.label``: the method, or the long-tail
  strategy for the base method; the rows of ``vltr-report``), mean with a std band over seeds;
* **test by method**: bars of the best-on-val checkpoint's test H/M/T mAP, per method;
* **across imbalance ratios**: test mAP and tail mAP against ``run.imbalance_ratio`` (log x),
  one point per run, and tail-mAP bars grouped by ratio;
* **per class**: test AP against log10 training count (from each run's
  ``class_report/per_class_ap`` table) and the table itself.

``group`` restricts the workspace to one W&B group (a sweep directory's name), ``tags`` to runs
carrying every tag (``ir:0.01``, ``dataset:videolt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

GROUPS = ("", "_head", "_medium", "_tail")
TITLES = {"": "all classes", "_head": "head", "_medium": "medium", "_tail": "tail"}
METHOD_KEY = "run.label"
RATIO_KEY = "run.imbalance_ratio"
PER_CLASS_TABLE = "class_report/per_class_ap"


def _modules() -> tuple[Any, Any, Any]:
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
        from wandb_workspaces import expr
    except ImportError as e:  # the optional dependency
        from vltr.utils.errors import ConfigError

        raise ConfigError(
            f"the W&B workspace needs wandb-workspaces ({e}): pip install 'vltr[dashboard]'"
        ) from None
    return ws, wr, expr


def build_workspace(
    entity: str,
    project: str = "vltr",
    name: str = "vltr: long-tail",
    group: str | None = None,
    tags: Sequence[str] = (),
) -> Any:
    """The ``wandb_workspaces.workspaces.Workspace`` of the module docstring (not saved)."""
    ws, wr, expr = _modules()
    grouped = {
        "groupby": wr.Config(METHOD_KEY),
        "groupby_aggfunc": "mean",
        "groupby_rangefunc": "stddev",
    }
    curves = [
        wr.LinePlot(
            title=f"val mAP, {TITLES[g]}", x="epoch", y=[f"val/mAP{g}"], range_y=(0, 1), **grouped
        )
        for g in GROUPS
    ]
    test_bars = [
        wr.BarPlot(
            title="test mAP by method (best-on-val checkpoint)",
            metrics=[wr.SummaryMetric(f"test/mAP{g}") for g in GROUPS],
            orientation="v",
            **grouped,
        )
    ]
    ratios = [
        wr.ScatterPlot(
            title=f"test mAP ({TITLES[g]}) vs imbalance ratio",
            x=wr.Config(RATIO_KEY),
            y=wr.SummaryMetric(f"test/mAP{g}"),
            log_x=True,
        )
        for g in ("", "_tail")
    ]
    ratios.append(
        wr.BarPlot(
            title="test tail mAP by imbalance ratio",
            metrics=[wr.SummaryMetric("test/mAP_tail")],
            groupby=wr.Config(RATIO_KEY),
            groupby_aggfunc="mean",
            groupby_rangefunc="stddev",
            orientation="v",
        )
    )
    per_class = [
        wr.CustomChart(
            query={"summaryTable": {"tableKey": PER_CLASS_TABLE}},
            chart_name="wandb/scatter/v0",
            chart_fields={"x": "log10_train_count", "y": "test_ap"},
            chart_strings={"title": "test AP vs training count (log10)"},
        ),
        wr.WeavePanelSummaryTable(table_name=PER_CLASS_TABLE),
    ]
    filters = []
    if group:
        filters.append(expr.Metric("Group") == group)
    filters += [expr.Tags("tags").isin([t]) for t in tags]
    return ws.Workspace(
        entity=entity,
        project=project,
        name=name,
        sections=[
            ws.Section(name="val mAP by method", panels=curves, is_open=True),
            ws.Section(name="test by method", panels=test_bars, is_open=True),
            ws.Section(name="across imbalance ratios", panels=ratios, is_open=True),
            ws.Section(name="per class", panels=per_class, is_open=True),
        ],
        settings=ws.WorkspaceSettings(x_axis="epoch"),
        runset_settings=ws.RunsetSettings(
            filters=filters,
            groupby=[expr.Config(METHOD_KEY)],
            pinned_columns=[
                f"config:{METHOD_KEY}",
                "config:run.aggregator",
                f"config:{RATIO_KEY}",
                "summary:test/mAP",
                "summary:test/mAP_head",
                "summary:test/mAP_medium",
                "summary:test/mAP_tail",
            ],
        ),
    )


def describe_workspace(workspace: Any) -> str:
    """The workspace's sections and panels, one line each (what ``--save`` would create)."""
    lines = [f"workspace {workspace.name!r} in {workspace.entity}/{workspace.project}"]
    filters = workspace.runset_settings.filters
    lines.append(f"  runs: {filters or 'all'}; grouped by {METHOD_KEY}")
    for section in workspace.sections:
        lines.append(f"  section {section.name!r}")
        for panel in section.panels:
            lines.append(f"    {type(panel).__name__}: {_panel_text(panel)}")
    return "\n".join(lines)


def _panel_text(panel: Any) -> str:
    kind = type(panel).__name__
    if kind == "LinePlot":
        return f"{', '.join(map(str, panel.y))} over {panel.x}, grouped by {_key(panel.groupby)}"
    if kind == "BarPlot":
        return f"{', '.join(_key(m) for m in panel.metrics)}, grouped by {_key(panel.groupby)}"
    if kind == "ScatterPlot":
        return f"{_key(panel.y)} vs {_key(panel.x)}{' (log x)' if panel.log_x else ''}"
    if kind == "CustomChart":
        return (
            f"{panel.chart_name} of {panel.query['summaryTable']['tableKey']}: {panel.chart_fields}"
        )
    if kind == "WeavePanelSummaryTable":
        return f"table {panel.table_name}"
    return kind


def _key(metric: Any) -> str:
    return str(getattr(metric, "name", metric))
