"""``python -m fhir_engagement`` runs the command line."""

from fhir_engagement.cli import main

raise SystemExit(main())
