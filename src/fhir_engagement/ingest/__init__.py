"""The outside world -> records (Event, PatientFacts, StatusFact). Parsers are pure."""
