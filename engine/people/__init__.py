"""People: identity and login, access (every "may"), substitutes (A/B角), notifications."""
