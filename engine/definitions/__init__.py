"""Process definitions: the repository and its lint, task rules, assignment, deadlines, forms, calendar, versions."""
