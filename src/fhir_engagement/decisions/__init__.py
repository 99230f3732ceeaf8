"""Decision -> the FHIR resources to write (Flag, Task, Provenance). Pure; deterministic ids."""
