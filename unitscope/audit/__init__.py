"""Audit and edit a model through its unit descriptions (MILAN's applications; docs/audit.md).

from unitscope.audit.edit import edit_experiment     # remove the units a text query finds
"""
