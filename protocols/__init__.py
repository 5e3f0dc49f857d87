"""The shipped protocol files (TOML). Read them with ``bench protocols`` or ``bench.protocols``."""
