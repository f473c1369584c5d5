"""The ``shepherd`` command line; speaks only the public REST APIs through ``api.client``."""
