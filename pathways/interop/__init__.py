"""Exchanging data with other systems: HL7 v2 lab feeds (hl7v2.py)."""
