"""The baseline of bench/intake.py: the least a webhook intake can do and still be real.

It checks the HMAC, parses the JSON and enqueues one RQ job; nothing else (no database, no
deduplication, no statuses). Served by gunicorn exactly as Conveyor is:

    WEBHOOK_SECRET=... REDIS_URL=... gunicorn ... 'bench.minimal_intake:create_app()'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from flask import Flask, jsonify, request
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer


def create_app() -> Flask:
    app = Flask(__name__)
    secret = os.environ["WEBHOOK_SECRET"].encode()
    queue = Queue("builds", connection=Redis.from_url(os.environ["REDIS_URL"]),
                  serializer=JSONSerializer)

    @app.post("/hooks/github")
    def hook():  # type: ignore[no-untyped-def]
        body = request.get_data()
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", "")):
            return jsonify(error="signature"), 401
        payload = json.loads(body)
        delivery = request.headers["X-GitHub-Delivery"]
        queue.enqueue_call("workers.build.run", args=(payload["after"],), job_id=delivery,
                           timeout=600, result_ttl=3600)
        return jsonify(delivery=delivery), 202

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return jsonify(ok=True)

    return app
