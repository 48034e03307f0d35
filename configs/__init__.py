"""Built-in YAML configs (paper/ and synthaffect/), shipped as package data."""
