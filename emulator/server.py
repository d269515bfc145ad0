"""Build and run the emulator's aiohttp application."""

from __future__ import annotations

from aiohttp import web

from emulator import routes
from emulator.core import Emulator
from emulator.state import Config


def create_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)  # DashScope's body limit
    routes.register(app, Emulator(config))
    return app
