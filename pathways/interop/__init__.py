"""Interoperability: HL7 v2 lab feeds (hl7v2.py); FHIR R4 resources and CDS Hooks to the case
document (fhir_case.py)."""
