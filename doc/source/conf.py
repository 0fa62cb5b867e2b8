# Sphinx configuration of the clouddisco documentation.
#
# Built with warnings as errors by `tox -e docs` and by CI
# (tests/functional/test_docs.py), from the repository root.
project = "clouddisco"
copyright = "clouddisco developers"
exclude_patterns: list[str] = []
html_theme = "alabaster"

extensions = [
    # The configuration reference, from the options registered in code.
    "oslo_config.sphinxext",
    # The policy reference, from the rules' defaults in code.
    "oslo_policy.sphinxext",
    # The CLI reference, from the `openstack clouddisco` commands.
    "cliff.sphinxext",
]

# A reference to a document that does not exist is an error, not a silent
# broken link.
nitpicky = False
