"""fastapi_app/jobs.py: a failed job records the code the synchronous endpoint would answer."""

from __future__ import annotations

import httpx
import openai
import pytest
import sqlalchemy.exc

from fastapi_app import jobs
from fastapi_app.common import ApiError

REQUEST = httpx.Request("POST", "http://upstream/v1/chat/completions")


@pytest.mark.parametrize(("exc", "code"), [
    (ApiError(404, "not_found", "no such user"), "not_found"),
    (openai.APITimeoutError(REQUEST), "upstream_timeout"),
    (openai.APIConnectionError(request=REQUEST), "upstream_error"),
    (sqlalchemy.exc.OperationalError("SELECT 1", {}, OSError("refused")), "database_unavailable"),
    (RuntimeError("bug"), "internal_error"),
])
def test_job_error_codes(exc, code):
    assert jobs.job_error(exc)["code"] == code


def test_record_is_compact_json_in_key_order():
    assert jobs.job_record("done", result={"b": 1, "a": "é"}) == '{"status":"done","result":{"b":1,"a":"é"}}'


@pytest.mark.parametrize(("job_id", "ok"), [("0" * 32, True), ("f" * 32, True), ("F" * 32, False),
                                            ("0" * 31, False), ("0" * 32 + "\n", False)])
def test_job_id_shape(job_id, ok):
    assert bool(jobs.JOB_ID.fullmatch(job_id)) is ok
