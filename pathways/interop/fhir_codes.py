"""The codes alpcare writes into FHIR, and its own code systems, each with its source.

Reading (FHIR → alpcare) uses the tables of ``fhir_case.py`` (ICD-10-CM prefixes and ATC codes
of spec/interop.md) and the LOINC codes of the case declaration (``engine/declaration.py``, as
``hl7v2.loinc_table`` reads them). Writing needs one code per value: the tables below. Every
code written here maps back to the same value when read (tests/test_fhir_import.py checks it),
and ``pathways/interop/CODES.md`` lists them all with their sources for people.

SNOMED CT and RxNorm: interop.md allows them only for codes checked against the published
code-system data; none has been checked for this version, so neither is read nor written (a
Condition or a medication carrying only such codes is an error naming it, never a guess).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pathways.interop.fhir_case import (
    ATC,
    GESTATIONAL_AGE_LOINC,
    ICD10CM,
    LOINC,
    PREGNANCY_STATUS_LOINC,
    WEIGHT_LOINC,
)

# The deployment's own base for alpcare's code systems and extension (interop.md uses it for
# the override reasons).
ALPCARE_FHIR: Final = "https://alpcare.example.org/fhir"
# A Patient extension holding the case fields no standard code carries (bone scan, fracture,
# dental examination, myeloma details, baselines…): one sub-extension per field, its url the
# field's path in the case document ("clinical.bone_scan"), its value typed by the field's kind.
CASE_EXTENSION: Final = f"{ALPCARE_FHIR}/StructureDefinition/case-fields"
# Lab tests without a LOINC code in reference-intervals.md (CrCl): an Observation coded here,
# the code being the case document's test ("crcl").
LAB_TEST_SYSTEM: Final = f"{ALPCARE_FHIR}/CodeSystem/lab-test"
# The MRN identifier alpcare writes (typed MR, v2-0203); any system is read.
MRN_SYSTEM: Final = f"{ALPCARE_FHIR}/NamingSystem/mrn"
IDENTIFIER_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
CONDITION_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/condition-clinical"
OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"

CMS_ICD10CM: Final = (
    "ICD-10-CM tabular list, CMS/NCHS (www.cms.gov/medicare/coding-billing/icd-10-codes)"
)
WHOCC_ATC: Final = "WHO Collaborating Centre ATC/DDD index (www.whocc.no/atc_ddd_index/)"
LOINC_ORG: Final = "LOINC (loinc.org)"


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str
    source: str


def _icd(code: str, display: str) -> Code:
    return Code(ICD10CM, code, display, CMS_ICD10CM)


# clinical.diagnoses → the one ICD-10-CM code written for it (inside its interop.md prefix).
DIAGNOSIS_CODES: Final[dict[str, Code]] = {
    "multiple_myeloma": _icd("C90.00", "Multiple myeloma not having achieved remission"),
    "mgus": _icd("D47.2", "Monoclonal gammopathy"),
    "paget": _icd("M88.9", "Osteitis deformans of unspecified bone"),
    "bone_metastases": _icd("C79.51", "Secondary malignant neoplasm of bone"),
    "primary_bone_tumour": _icd(
        "C41.9", "Malignant neoplasm of bone and articular cartilage, unspecified"
    ),
    "osteomalacia": _icd("M83.9", "Adult osteomalacia, unspecified"),
    "hyperparathyroidism": _icd("E21.3", "Hyperparathyroidism, unspecified"),
    "vitamin_d_deficiency": _icd("E55.9", "Vitamin D deficiency, unspecified"),
    "osteoporosis": _icd("M81.0", "Age-related osteoporosis without current pathological fracture"),
    "chronic_kidney_disease": _icd("N18.9", "Chronic kidney disease, unspecified"),
    "liver_disease": _icd("K76.9", "Liver disease, unspecified"),
    "sepsis": _icd("A41.9", "Sepsis, unspecified organism"),
    "hiv_aids": _icd("B20", "Human immunodeficiency virus [HIV] disease"),
}

# clinical.cancer → ICD-10-CM code (breast depends on the patient's sex: the code says it).
CANCER_CODES: Final[dict[str, Code]] = {
    "breast": _icd(
        "C50.919", "Malignant neoplasm of unspecified site of unspecified female breast"
    ),
    "breast_male": _icd(
        "C50.929", "Malignant neoplasm of unspecified site of unspecified male breast"
    ),
    "prostate": _icd("C61", "Malignant neoplasm of prostate"),
    "renal": _icd("C64.9", "Malignant neoplasm of unspecified kidney, except renal pelvis"),
    "lung": _icd(
        "C34.90", "Malignant neoplasm of unspecified part of unspecified bronchus or lung"
    ),
    "other": _icd("C80.1", "Malignant (primary) neoplasm, unspecified"),
}

# clinical.therapies[].agent → ATC code (other_bisphosphonate: the ATC group M05BA).
AGENT_CODES: Final[dict[str, Code]] = {
    "alendronate": Code(ATC, "M05BA04", "alendronic acid", WHOCC_ATC),
    "zoledronic_acid": Code(ATC, "M05BA08", "zoledronic acid", WHOCC_ATC),
    "pamidronate": Code(ATC, "M05BA03", "pamidronic acid", WHOCC_ATC),
    "denosumab": Code(ATC, "M05BX04", "denosumab", WHOCC_ATC),
    "other_bisphosphonate": Code(ATC, "M05BA", "Bisphosphonates", WHOCC_ATC),
}

# Observations that are not lab results (interop.md "Other observations").
WEIGHT: Final = Code(LOINC, WEIGHT_LOINC, "Body weight", LOINC_ORG)
PREGNANCY_STATUS: Final = Code(LOINC, PREGNANCY_STATUS_LOINC, "Pregnancy status", LOINC_ORG)
GESTATIONAL_AGE: Final = Code(LOINC, GESTATIONAL_AGE_LOINC, "Gestational age in weeks", LOINC_ORG)
# LOINC answer list LL4129-4 (pregnancy status).
PREGNANT: Final = Code(LOINC, "LA15173-0", "Pregnant", LOINC_ORG)
NOT_PREGNANT: Final = Code(LOINC, "LA26683-5", "Not pregnant", LOINC_ORG)
# Pregnancy as a Condition (interop.md): Z33.1, read only (alpcare writes the Observation).
PREGNANCY_CONDITION: Final = _icd("Z33.1", "Pregnant state, incidental")

# The SNOMED CT and RxNorm codes alpcare reads: none verified yet (see the module docstring).
SNOMED_DIAGNOSES: Final[dict[str, str]] = {}
RXNORM_AGENTS: Final[dict[str, str]] = {}
