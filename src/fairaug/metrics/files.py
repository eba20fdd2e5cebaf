"""The file name evaluate_quality writes in outputs/<d>/metrics (its detail and reasons files beside
it are named by `fairaug.metrics_files.detail_path` and `fairaug.io.reasons_path`)."""

QUALITY = "quality.json"  # DVC metrics: the headline numbers
