"""Plugin methods from the literature, registered through the project's ``bench.methods`` entry points."""
