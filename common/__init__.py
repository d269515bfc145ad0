"""Settings, models and services shared by the web and worker processes."""

VERSION = "0.1.0"
