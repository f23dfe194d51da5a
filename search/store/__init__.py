"""Study storage and what is kept with a study: its trials, notes and artifacts."""
