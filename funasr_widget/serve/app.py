"""The ingress: FastAPI inside Ray Serve, speaking the OpenAI-compatible
``POST /v1/audio/transcriptions``, ``GET /v1/models`` and ``GET /health``.

Every request needs a student's token (checked here too, so a local user who reaches
Serve's port without nginx is refused), read from the token file as it is now: a line
removed is a token refused from the next request on. A transcription request carries one WAV file
(wav.py: checked from its header, capped in seconds), ``model`` (must be the served name)
and the options the model takes (``language``, ``use_itn``, ``hotword``), checked by the
kernel's own checker. The file name, ``spk`` and every other field are ignored: nothing a
client sends is opened as a path or URL, and nothing makes the server load or download.

A request whose Recognizer replica dies mid-decode is sent again to another one (a decode
changes nothing, and the ingress holds the audio); only when none is left for
``RETRY_FOR_S`` does the client get 503, which the widget retries.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations as types.
import asyncio
import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

from ..asr import check_options
from . import tokens, wav

RETRY_FOR_S = 60.0  # a killed replica is replaced in about this long on a loaded CPU
RESPONSE_FORMATS = ("json", "verbose_json", "text")
LOST = (ActorDiedError, ActorUnavailableError, RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)

logger = logging.getLogger("ray.serve")  # the replica's own log file
app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


def error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="funasr"'} if status == 401 else None
    return JSONResponse({"error": {"message": message, "code": status}}, status, headers=headers)


def form_options(form, accepted: list[str]) -> dict:
    """The options in the form, as the kernel's types, checked by the kernel's checker."""
    options: dict = {}
    for name in accepted:
        value = form.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a form field, not a file")
        if name == "use_itn":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"use_itn must be true or false, got {value[:20]!r}")
            options[name] = value.lower() in ("true", "1")
        else:
            options[name] = value
    return check_options(options)


@serve.deployment(max_ongoing_requests=256, health_check_period_s=5)
@serve.ingress(app)
class Ingress:
    def __init__(self, recognizer, served_name: str, max_seconds: float, max_body: int, token_file: str):
        self.recognizer = recognizer
        self.served_name, self.max_seconds, self.max_body = served_name, max_seconds, max_body
        self.tokens = tokens.Watched(Path(token_file))
        self.described: dict | None = None

    async def _describe(self) -> dict:
        if self.described is None:
            self.described = await self._call(self.recognizer.describe)
        return self.described

    async def _call(self, method, *args):
        deadline, tries = time.monotonic() + RETRY_FOR_S, 0
        while True:
            try:
                return await method.remote(*args)
            except (*LOST, BackPressureError) as err:
                if time.monotonic() > deadline:
                    raise
                if tries == 0:  # once per request: a replica being replaced takes many tries
                    logger.warning("no recognizer answered (%s): sending the request again", type(err).__name__)
                tries += 1
                await asyncio.sleep(0.5)

    def _refused(self, request: Request) -> JSONResponse | None:
        if tokens.match(request.headers.get("authorization"), self.tokens.digests()) is None:
            return error(401, "missing or wrong bearer token")
        return None

    @app.get("/health")
    async def health(self, request: Request):
        return self._refused(request) or {"status": "ok", "model": self.served_name}

    @app.get("/v1/models")
    async def models(self, request: Request):
        refused = self._refused(request)
        if refused:
            return refused
        described = await self._describe()
        model = {
            "id": self.served_name,
            "object": "model",
            "owned_by": "funasr-widget",
            "options": described["options"],  # what POST /v1/audio/transcriptions takes besides model
            "max_seconds": self.max_seconds,
        }
        return {"object": "list", "data": [model]}

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(self, request: Request):
        refused = self._refused(request)
        if refused:
            return refused
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            return error(411, "a Content-Length is required")
        if int(length) > self.max_body:
            return error(413, f"request body larger than {self.max_body} bytes")
        # Malformed multipart: Starlette answers 400 itself. Fields are small; the file is spooled.
        async with request.form(max_files=1, max_fields=16, max_part_size=4096) as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                return error(400, "the form needs a 'file' (WAV)")
            model = form.get("model") or self.served_name
            if model != self.served_name:
                return error(
                    404, f"model {str(model)[:64]!r} is not served here; this server serves {self.served_name!r}"
                )
            response_format = form.get("response_format") or "json"
            if response_format not in RESPONSE_FORMATS:
                return error(400, f"response_format must be one of {', '.join(RESPONSE_FORMATS)}")
            try:
                options = form_options(form, (await self._describe())["options"])
            except (TypeError, ValueError) as err:
                return error(400, str(err)[:300])
            data = await upload.read(self.max_body + 1)
        try:
            samples = wav.decode(data, self.max_seconds)
        except wav.AudioRefused as err:
            return error(err.status, str(err))
        try:
            result = await self._call(self.recognizer.transcribe, (samples, options))
        except (*LOST, BackPressureError):
            return error(503, "no recognizer replica is available; try again shortly")
        if "error" in result:
            return error(500, f"the recognizer failed on this segment: {result['error']}"[:300])
        if response_format == "text":
            return PlainTextResponse(result["text"])
        body = {"text": result["text"], "duration": round(len(samples) / wav.SAMPLE_RATE, 3)}
        if result.get("language"):
            body["language"] = result["language"]
        return body
