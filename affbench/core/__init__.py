"""What every stage and command rests on: the plugin registry and the run configuration."""
