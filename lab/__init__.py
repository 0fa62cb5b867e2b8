"""The lab: a whole clouddisco on one machine from real parts (MariaDB,
RabbitMQ, Keystone, real processes, namespaces), with the tools to fault and
watch it.

Shared by the functional tests, bench/ and tools/quickstart.py. Not part of
the installed product (setup.cfg ships only ``clouddisco``).
"""
