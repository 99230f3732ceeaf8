"""Everything that talks to a FHIR server: the REST client, its credentials, Subscriptions."""
