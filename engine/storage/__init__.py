"""Storage: the database, ORM rows, the audit chain and the Alembic migrations."""
