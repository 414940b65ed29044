"""Repository-wide pytest setup: pytester drives the plugin's end-to-end tests."""

pytest_plugins = ["pytester"]
