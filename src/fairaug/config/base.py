"""The base of every params model."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo in params.yaml names the key); values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
