"""affbench built-in plugins: registered through the same `affbench` entry points a third party uses."""
