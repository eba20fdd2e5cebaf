"""fairaug dashboard: runs, pipeline comparison, per-FST fairness, samples and the model registry,
read from MLflow (MLFLOW_TRACKING_URI, else the project's mlflow.db). Start it with
`fairaug dashboard` (binds 127.0.0.1) or `streamlit run dashboards/app.py`."""

from pathlib import Path

import streamlit as st

from views.common import store_uri

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="fairaug dashboard", layout="wide")
navigation = st.navigation([
    st.Page(VIEWS / "runs.py", title="Runs", default=True),
    st.Page(VIEWS / "compare.py", title="Compare"),
    st.Page(VIEWS / "fairness.py", title="Fairness"),
    st.Page(VIEWS / "samples.py", title="Samples"),
    st.Page(VIEWS / "registry.py", title="Registry"),
])
st.sidebar.caption(f"MLflow store: `{store_uri()}`")
navigation.run()
