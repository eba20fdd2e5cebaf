"""The file names the fairness stages write: a classifier's out dir (outputs/<d>/classifier/<variant>)
and evaluate_fairness's metrics and plots (outputs/<d>/metrics)."""

WEIGHTS = "model.safetensors"  # the classifier, its classes in the metadata (also the generate filter's)
PREDICTIONS = "predictions.parquet"
METRICS = "metrics.json"
MIX = "mix.json"  # augmented only
FAIRNESS = "fairness.json"  # DVC metrics; detail and reasons files beside it (`fairaug.metrics_files`)
PER_FST_PLOT = "fairness_per_fst.csv"
ROC_PLOT = "roc_per_fst.csv"
