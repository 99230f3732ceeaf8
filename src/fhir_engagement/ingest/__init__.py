"""The outside world -> records (Event, PatientFacts, StatusFact). Parsers are pure; servers take a handler."""
