"""``python -m fhir_engagement`` runs the command line."""

from fhir_engagement.cli import run

raise SystemExit(run())
