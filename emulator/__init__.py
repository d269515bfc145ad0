"""A protocol-faithful DashScope emulator for tests, benchmarks and offline demos.

    python -m emulator --host 127.0.0.1 --port 8089 --api-key sk-emulator

It speaks DashScope's wire format (dashscope-protocol.md) byte for byte where the SDK depends
on it, and answers deterministically so tests can assert exact tokens and costs.
"""
