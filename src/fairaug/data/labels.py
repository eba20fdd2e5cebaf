"""Label vocabularies of the supported data sets."""

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

FST_VALUES: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
# An image whose FST is unknown (no label, and the ITA estimate abstained): its own group, never a type.
FST_UNKNOWN = 0
FST_ROMAN: dict[int, str] = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI"}
