"""Alibaba Function Compute functions that call DashScope for the worker (see fc/README.md)."""
