"""A bare Flask JSON endpoint, served by gunicorn exactly like the platform's web tier."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/json")
def echo():
    body = request.get_json(silent=True) or {}
    return jsonify(code=202, message="accepted", data={"echo": len(body)}), 202
