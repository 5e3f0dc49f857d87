"""Example survbench plugin (see docs/plugins.md in survbench)."""
