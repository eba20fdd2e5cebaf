"""Label vocabularies of the supported data sets (the Fitzpatrick skin types live in `fairaug.skin.types`)."""

from __future__ import annotations

# HAM10000 diagnosis codes and their names (used in prompts and reports).
HAM10000_DX: dict[str, str] = {
    "akiec": "actinic keratosis",
    "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "melanocytic nevus",
    "vasc": "vascular lesion",
}
MALIGNANT_DX: frozenset[str] = frozenset({"mel", "bcc", "akiec"})

# Wound healing phases, in order (quadratic kappa treats them as ordinal).
WOUND_PHASES: dict[str, str] = {"I": "inflammatory", "P": "proliferative", "R": "remodeling"}
