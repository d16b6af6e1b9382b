"""FHIR R4 read/search facade of a hospital's records: `/fhir/<slug>/`."""
