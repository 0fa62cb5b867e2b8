"""Python client library and OpenStackClient plugin of the clouddisco API.

A package of its own, apart from the server's ``clouddisco``: it imports
nothing from it, so it can be installed on a laptop and split into its own
repository (python-clouddiscoclient) without change.
"""
