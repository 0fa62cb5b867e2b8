# Sphinx configuration of the clouddisco documentation.
project = "clouddisco"
copyright = "clouddisco developers"
exclude_patterns: list[str] = []
html_theme = "alabaster"
