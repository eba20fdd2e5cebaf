"""The file names of a prepared data set (outputs/<d>/prepared): the manifest every later stage
reads, and the validation report. The synthetic set's manifest has the same name."""

MANIFEST = "manifest.parquet"
VALIDATION_JSON = "validation.json"
VALIDATION_HTML = "validation.html"
