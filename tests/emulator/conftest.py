"""The emulator as the `dashscope` SDK's 1.x module-level calls see it."""

from __future__ import annotations

import dashscope
import pytest


@pytest.fixture
def emu(fresh_emulator, monkeypatch):
    # The SDK's task calls (fetch, cancel, list) and its upload policy request read their host
    # from this documented attribute at call time; generation calls take base_address per call.
    monkeypatch.setattr(dashscope, "base_http_api_url", fresh_emulator.api_base)
    return fresh_emulator
