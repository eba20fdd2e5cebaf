"""MLflow runs per stage with lineage tags."""

from fairaug.tracking.runs import StageRun, configure_tracking, numeric_metrics, stage_run

__all__ = ["StageRun", "configure_tracking", "numeric_metrics", "stage_run"]
