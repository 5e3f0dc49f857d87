"""Hand-crafted image features shared by the feature baselines (computed once per patient and cached)."""
