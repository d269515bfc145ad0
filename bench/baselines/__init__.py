"""Bare reference implementations the platform is measured against."""
