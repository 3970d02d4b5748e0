"""Each receipt, as it is made, sent elsewhere too, so that the office's own copy is not the
only one: POSTed as JSON to TALLY_PUBLISH_URL and/or put in an S3-compatible bucket
(TALLY_PUBLISH_S3_BUCKET, under TALLY_PUBLISH_S3_PREFIX/<day>/<hash>.json).

A `publish_receipt` job, keyed by the receipt's hash, is queued in the same transaction as the
receipt, so it is neither lost nor doubled; the worker runs it with the queue's retries. The
POST is idempotent for the receiver (the same body and hash each time).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from flask import Flask
from sqlalchemy import select

from jobs.runner import RetryLater, job, queue
from models import db
from models.receipts import TallyReceipt
from storage.s3 import S3Storage

from .chain import published

PUBLISH_TIMEOUT_SECONDS = 10


def publishing(config) -> bool:
    return bool(config["TALLY_PUBLISH_URL"] or config["TALLY_PUBLISH_S3_BUCKET"])


def queue_publication(session, config, receipt: TallyReceipt) -> None:
    """Queue the receipt's publication, when somewhere to publish is set (the caller commits)."""
    if publishing(config):
        queue(session, config, "publish_receipt", receipt.hash)


@job("publish_receipt")
def publish_receipt(app: Flask, claimed) -> None:
    receipt = db.session.scalar(select(TallyReceipt).where(TallyReceipt.hash == claimed.key))
    if receipt is None:
        return
    document = json.dumps(published(receipt), ensure_ascii=False, sort_keys=True).encode("utf-8")
    config = app.config
    if config["TALLY_PUBLISH_URL"]:
        request = urllib.request.Request(
            config["TALLY_PUBLISH_URL"], data=document, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=PUBLISH_TIMEOUT_SECONDS) as answer:
                answer.read()
        except (urllib.error.URLError, OSError) as exc:
            raise RetryLater(f"could not POST receipt {receipt.hash[:12]} to TALLY_PUBLISH_URL: {exc}") from None
    if config["TALLY_PUBLISH_S3_BUCKET"]:
        bucket = S3Storage(
            config["TALLY_PUBLISH_S3_BUCKET"],
            config["TALLY_PUBLISH_S3_PREFIX"],
            endpoint_url=config["S3_ENDPOINT_URL"],
            region=config["S3_REGION"],
        )
        bucket.put(f"{receipt.day.isoformat()}/{receipt.hash}.json", document, "application/json")
