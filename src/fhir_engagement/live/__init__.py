"""``fhir-engagement serve``: the long-running process (app, routes, inboxes, outbox, metrics)."""
