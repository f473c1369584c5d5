"""Persistence: Peewee models by domain, the database binding, migrations and the DB executor."""
