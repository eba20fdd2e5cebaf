"""Registry: the data set's LoRA versions, aliases, each version's gates and decision, the promotion
history, and promotion from the page when params.yaml enables it (read-only by default)."""

import streamlit as st

from fairaug.errors import FairaugError
from fairaug.tracking import model_registry
from views.common import TTL_SECONDS, client, pick_dataset, project_params, project_root, store_uri

st.title("Model registry")
dataset, experiment_id = pick_dataset()
uri = store_uri()
try:
    params = project_params()
except FairaugError as err:
    st.error(f"{err}")
    st.stop()
name = params.promote.registered_model(dataset)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def versions(uri: str, name: str):
    return model_registry.model_versions(client(uri), name), model_registry.version_aliases(client(uri), name)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def history(uri: str, experiment_id: str):
    return model_registry.promotion_history(client(uri), experiment_id)


found, aliases = versions(uri, name)
if not found:
    st.info(f"No registered model {name} yet: `fairaug promote --dataset {dataset}` registers the LoRA.")
else:
    table = model_registry.versions_table(found, aliases)
    champion = table[table["aliases"].str.contains("champion")]
    st.metric("Champion", f"version {champion['version'].iloc[0]}" if not champion.empty else "none")
    st.dataframe(table, hide_index=True, width="stretch")
    chosen = st.selectbox("Version", table["version"].tolist())
    version = next(v for v in found if int(v.version) == chosen)
    row = table[table["version"] == chosen].iloc[0]
    st.markdown(f"**Version {chosen}**: {row['decision']}" + (f", {row['reason']}" if row["reason"] else "")
                + (" (forced)" if row["forced"] else ""))  # fmt: skip
    gates = model_registry.gate_table(version)
    if gates.empty:
        st.info("No gate recorded on this version (not decided yet).")
    else:
        st.dataframe(gates, hide_index=True, width="stretch")

st.subheader("Promotion history")
decisions = history(uri, experiment_id)
if decisions.empty:
    st.info("No promotion decision yet.")
else:
    st.dataframe(decisions, hide_index=True, width="stretch")

st.subheader("Promote")
if not params.dashboard.allow_promotion:
    st.caption("Read-only: set `dashboard.allow_promotion: true` in params.yaml to promote from here.")
elif found:
    with st.form("promote"):
        target = st.selectbox("Version to promote", [int(v.version) for v in found], key="promote_version")
        force = st.checkbox("Force (skip failed gates)")
        reason = st.text_input("Reason (required when forcing)")
        confirmed = st.checkbox(f"I confirm: make this version the champion of {name}")
        submitted = st.form_submit_button("Promote")
    if submitted and not confirmed:
        st.warning("Tick the confirmation first.")
    elif submitted and force and not reason.strip():
        st.warning("A forced promotion needs a reason.")
    elif submitted:
        from fairaug.registry.promote import promote_version  # the registry's own gates decide

        try:
            outcome = promote_version(params, dataset, target, force_reason=reason.strip() if force else None,
                                      root=project_root())  # fmt: skip
        except FairaugError as err:
            st.error(f"{err}")
        else:
            st.cache_data.clear()
            st.success(f"Version {target}: {outcome.verdict.decision}: {outcome.verdict.reason}")
