"""Interoperability: outside codes and resources (FHIR R4, CDS Hooks) ↔ alpcare's case document."""
