"""The Tornado application: shared plumbing and one package per API family."""
