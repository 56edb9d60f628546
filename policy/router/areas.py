"""MMLU's 57 subjects grouped into four areas, as the MMLU paper groups them.

Health, business and "miscellaneous"/"global facts" subjects form "other"; philosophy,
history and law "humanities"; economics, politics, psychology, geography and culture
"social_sciences"; the sciences, mathematics, computing and engineering "stem".
"""

from __future__ import annotations


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


AREAS: dict[str, frozenset[str]] = {
    "stem": _names(
        "abstract_algebra astronomy college_biology college_chemistry college_computer_science "
        "college_mathematics college_physics computer_security conceptual_physics "
        "electrical_engineering elementary_mathematics high_school_biology high_school_chemistry "
        "high_school_computer_science high_school_mathematics high_school_physics "
        "high_school_statistics machine_learning"
    ),
    "humanities": _names(
        "formal_logic high_school_european_history high_school_us_history high_school_world_history "
        "international_law jurisprudence logical_fallacies moral_disputes moral_scenarios philosophy "
        "prehistory professional_law world_religions"
    ),
    "social_sciences": _names(
        "econometrics high_school_geography high_school_government_and_politics "
        "high_school_macroeconomics high_school_microeconomics high_school_psychology human_sexuality "
        "professional_psychology public_relations security_studies sociology us_foreign_policy"
    ),
    "other": _names(
        "anatomy business_ethics clinical_knowledge college_medicine global_facts human_aging "
        "management marketing medical_genetics miscellaneous nutrition professional_accounting "
        "professional_medicine virology"
    ),
}
_AREA_OF = {subject: area for area, subjects in AREAS.items() for subject in subjects}


def area_of(subject: str) -> str:
    try:
        return _AREA_OF[subject]
    except KeyError:
        raise ValueError(f"unknown MMLU subject {subject!r} (not in policy/router/areas.py)") from None
