"""A tracking server that does not answer is one clear line, not minutes of retries and a traceback."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from fairaug.errors import FairaugError

# MLflow's own defaults retry a dead server for minutes (7 retries, backoff factor 2, 120 s timeout)
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
HEALTH_TIMEOUT_S = 10


class TrackingUnavailable(FairaugError):
    """The tracking store could not be reached or refused a request."""


def check_tracking_server(uri: str) -> None:
    """For an http(s) tracking URI: answer quickly (``HTTP_DEFAULTS`` unless the user set them) and
    raise `TrackingUnavailable` now if the server's /health does not answer; other stores pass."""
    if not uri.startswith(("http://", "https://")):
        return
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S).raise_for_status()
    except requests.RequestException as err:
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} unreachable ({type(err).__name__}); start it, or unset "
            "MLFLOW_TRACKING_URI to use the embedded store"
        ) from None


@contextlib.contextmanager
def tracking_errors(uri: str) -> Iterator[None]:
    """Turn a failed request to the tracking store into `TrackingUnavailable` naming the store."""
    import requests
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, requests.RequestException) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrackingUnavailable(f"MLflow tracking store {uri}: {first_line[:300]}") from None
