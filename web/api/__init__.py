"""One blueprint per resource."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from web.api import (
        admin,
        auth,
        chat,
        files,
        generation,
        health,
        jobs,
        keys,
        openai_v1,
        usage,
        webhooks,
    )

    for module in (health, auth, admin, chat, generation, files, jobs, usage, keys, webhooks,
                   openai_v1):
        app.register_blueprint(module.bp)
