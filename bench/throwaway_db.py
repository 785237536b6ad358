"""A benchmark's own PostgreSQL database: dropped, and created afresh when asked."""

from __future__ import annotations


def recreate_database(database_url: str, *, create: bool) -> None:
    """Drop the benchmark's database, and create it afresh when asked."""
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            connection.execute(f'CREATE DATABASE "{name}"')
