"""Plugin methods from the seed papers (RobSurv, AdaMSS, FM variants), registered through entry points."""
