"""MLflow runs per stage with lineage tags."""

from fairaug.tracking.runs import RUN_FILE, StageRun, configure_tracking, numeric_metrics, read_run_id, stage_run

__all__ = ["RUN_FILE", "StageRun", "configure_tracking", "numeric_metrics", "read_run_id", "stage_run"]
