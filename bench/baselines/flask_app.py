"""Bare Flask endpoints, served by gunicorn exactly like the platform's web tier.

/json is the floor of a JSON request; /proxy is the floor of a Python gateway: the same SDK
call the platform's worker makes, in the request, with no auth, limits, job or queue.
"""

import os

import requests
from dashscope import Generation
from flask import Flask, jsonify, request

app = Flask(__name__)
_upstream = requests.Session()


@app.post("/json")
def echo():
    body = request.get_json(silent=True) or {}
    return jsonify(code=202, message="accepted", data={"echo": len(body)}), 202


@app.post("/proxy")
def proxy():
    body = request.get_json()
    response = Generation.call(model=body["model"], messages=body["messages"],
                               result_format="message", session=_upstream,
                               api_key=os.environ["QWEN_API_KEY"],
                               base_address=os.environ["DASHSCOPE_HTTP_BASE_URL"])
    return jsonify(code=200, message="ok", data=response.output), 200
