"""The remote engine: each closed segment goes to an inference server as 16 kHz mono
16-bit WAV through the OpenAI-compatible ``POST /v1/audio/transcriptions`` that the class
server (``python -m funasr_widget.serve``), FunASR's own ``funasr-server`` and vLLM
(Fun-ASR-Nano) speak. The kernel keeps the VAD.

The model options go along where the server says it takes them: the class server lists
them under its model in ``GET /v1/models`` (``"options": ["language", "use_itn"]``); a
server that lists none is taken to accept OpenAI's ``language`` only, and an option it
cannot take is refused when loading, with the reason (never silently dropped).

Failures are sorted for the pipeline: a server that cannot be reached, times out or
answers 429/502/503/504 raises EngineUnavailable (the segment waits, with its audio,
and is retried in order); 401/403, 400/413/422 and 500 raise RemoteError with the
reason in words (that segment is marked, the next ones go on).

The token (``api_key=`` or ``$FUNASR_WIDGET_API_KEY``) travels only in the
``Authorization: Bearer`` header: it is held in a :class:`Secret`, whose repr hides it,
and never goes into a message.
"""

from __future__ import annotations

import io
import ipaddress
import os
import re
import ssl
import time
import wave
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .._constants import SAMPLE_RATE
from ..dependencies import require
from ..models import ModelLoadError
from .base import Decoder, EngineUnavailable
from .segment import MIN_SAMPLES

TOKEN_ENV = "FUNASR_WIDGET_API_KEY"
DEFAULT_MODEL = "auto"  # the server's only model (funasr-server calls its --model-path folder "custom")
# The options a request may carry, as form fields: sent only to a server that lists them.
REQUEST_OPTIONS = ("language", "use_itn", "hotword")
OPENAI_OPTIONS = ["language"]  # what an OpenAI-compatible server that lists nothing takes
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = (15.0, 1.0, 120.0)  # base + per second of audio, capped: the server queues requests
PARTIAL_TIMEOUT_S = 2.0  # a partial that cannot come quickly is not worth waiting for
RETRYABLE = {429, 502, 503, 504}
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
_TOKEN_FIX = (
    f"Give the server's token as api_key=... or set the environment variable {TOKEN_ENV} "
    "before starting the kernel (ask whoever runs the server for it)."
)
_TAG = re.compile(r"<\|[^|]*\|>")


class RemoteError(RuntimeError):
    """The server answered, and no retry will change the answer (auth, a bad request)."""


class Secret:
    """A token that never prints: repr, str and format show a placeholder."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_server(server) -> str:
    """The server's base URL, normalised (no trailing slash, no /v1). Plain http:// only
    to this machine: anything else would send the token and the speech in clear text."""
    if not isinstance(server, str) or not server.strip():
        raise TypeError(
            f"server must be the inference server's URL, like 'https://asr.example.org', got {type(server).__name__}"
        )
    url = server.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"server must be an http(s) URL with a host name, like 'https://asr.example.org', got {url!r}")
    if parts.username or parts.password:
        raise ValueError(
            f"server must not carry a user name or password in the URL; give the token as api_key=... or ${TOKEN_ENV}"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"server must be a base URL without ?query or #fragment, got {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(
            f"Refusing plain http:// to {parts.hostname}: speech and the token would cross the network "
            "unencrypted. Use https:// (a TLS proxy such as nginx in front of the server: see "
            "`python -m funasr_widget.serve`), or an SSH tunnel to http://127.0.0.1:PORT."
        )
    return url


def check_remote_options(options: dict) -> dict:
    """`server`, `api_key`, `ca_bundle`, `server_partials`, checked; the token wrapped in a
    Secret. Messages never repeat the token's value."""
    out = dict(options)
    server = out.get("server")
    if server is None:
        given = sorted(k for k, v in out.items() if v is not None and k != "server")
        if given:
            raise TypeError(f"{', '.join(given)} only apply to a remote engine: give server='https://...' too")
        return {}
    out["server"] = check_server(server)
    key = out.get("api_key")
    if key is not None and not isinstance(key, Secret):
        if not isinstance(key, str) or not key.strip():
            raise TypeError(
                f"api_key must be the server's token as a non-empty str (or leave it out and set "
                f"${TOKEN_ENV}), got a {type(key).__name__}"
            )
        if any(c.isspace() for c in key.strip()) or not key.strip().isprintable():
            raise ValueError("api_key holds spaces or control characters: give the token alone")
        out["api_key"] = Secret(key.strip())
    bundle = out.get("ca_bundle")
    if bundle is not None:
        if not isinstance(bundle, (str, os.PathLike)):
            raise TypeError(f"ca_bundle must be the path of a PEM file of CA certificates, got {bundle!r}")
        path = Path(bundle).expanduser()
        if not path.is_file():
            raise ValueError(
                f"ca_bundle {str(path)!r} is not a file: give the PEM file with your organisation's CA certificate(s)"
            )
        if b"-----BEGIN CERTIFICATE-----" not in path.read_bytes()[:1_000_000]:
            raise ValueError(f"ca_bundle {str(path)!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        out["ca_bundle"] = str(path)
    partials = out.get("server_partials")
    if partials is not None and not isinstance(partials, bool):
        raise TypeError(f"server_partials must be True or False, got {partials!r}")
    return {k: v for k, v in out.items() if v is not None}


def wav_bytes(samples: np.ndarray) -> bytes:
    """16 kHz mono 16-bit PCM WAV in memory, the encoding of audio.write_wav."""
    pcm = (np.clip(np.asarray(samples, np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(pcm.tobytes())
    return buf.getvalue()


def _reason(response) -> str:
    """The server's own words: FastAPI's {"detail"}, OpenAI's {"error": {"message"}}, or the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("error") or body.get("message")
        if isinstance(detail, dict):
            detail = detail.get("message") or detail
        if detail:
            return str(detail)[:300]
    text = re.sub(r"<[^>]+>", " ", response.text or "")  # nginx answers in HTML
    return re.sub(r"\s+", " ", text).strip()[:300] or response.reason_phrase


class RemoteEngine(Decoder):
    """Same interface as SegmentEngine: ``transcribe(samples) -> {"text", ...}``."""

    def __init__(
        self,
        server: str,
        model: str = DEFAULT_MODEL,
        *,
        api_key=None,
        ca_bundle=None,
        server_partials: bool = False,
        language: str | None = None,
        use_itn: bool | None = None,
        hotword: str | list | tuple | None = None,
    ):
        httpx = require("httpx", "remote", "A remote engine (server=)")
        self.url = check_server(server)
        self.name = self.model = str(model)
        self.architecture = "remote"
        self.device = self.url
        self.path = None
        self.partials = bool(server_partials)
        given = {"language": language, "use_itn": use_itn, "hotword": hotword}
        self.options = {k: v for k, v in given.items() if v is not None}
        self.accepts: list[str] = []  # the options the server takes (check() asks it)
        if api_key is None and os.environ.get(TOKEN_ENV, "").strip():
            api_key = Secret(os.environ[TOKEN_ENV].strip())
        elif isinstance(api_key, str):
            api_key = Secret(api_key)
        self._token: Secret | None = api_key
        headers = {"Authorization": f"Bearer {api_key.reveal()}"} if api_key else {}
        # Certificates are always verified: against certifi's CAs, or the organisation's own.
        verify = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            verify=verify,
            timeout=httpx.Timeout(10.0, connect=CONNECT_TIMEOUT_S),
            follow_redirects=False,
            trust_env=False,
        )
        self.rtt_ms: float | None = None  # the last request's round trip

    def __repr__(self) -> str:
        auth = "with a token" if self._token else "no token"
        return f"<RemoteEngine {self.model!r} at {self.url} ({auth})>"

    def close(self) -> None:
        self._client.close()

    # -- requests ------------------------------------------------------------------

    def _request(self, method: str, path: str, timeout: float | None = None, **kwargs):
        import httpx

        t0 = time.perf_counter()
        try:
            extra = {} if timeout is None else {"timeout": httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S)}
            response = self._client.request(method, path, **extra, **kwargs)
        except httpx.TimeoutException as err:
            raise EngineUnavailable(f"the server {self.url} did not answer in time ({type(err).__name__})") from None
        except httpx.TransportError as err:
            text = str(err)
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                raise RemoteError(
                    f"The server {self.url}'s TLS certificate is not trusted ({text[:200]}). If your "
                    "organisation runs its own CA, pass ca_bundle='/path/to/ca.pem'."
                ) from None
            raise EngineUnavailable(
                f"the server {self.url} cannot be reached ({type(err).__name__}: {text[:200]})"
            ) from None
        self.rtt_ms = (time.perf_counter() - t0) * 1000
        status = response.status_code
        if status in (401, 403):
            given = "the token was refused" if self._token else "no token was given"
            raise RemoteError(f"Authentication failed at {self.url} (HTTP {status}: {given}). {_TOKEN_FIX}")
        if status in RETRYABLE:  # overloaded, restarting, a proxy without a live replica
            raise EngineUnavailable(f"the server {self.url} is unavailable (HTTP {status}: {_reason(response)})")
        return response

    def check(self) -> dict:
        """Is the server there, does it take the token, does it serve the model? Raises
        ModelLoadError saying what to do; returns {models, rtt_ms}."""
        try:
            response = self._request("GET", "/v1/models")
        except EngineUnavailable as err:
            raise ModelLoadError(
                f"The ASR server cannot be reached: {err}.",
                f"Start the server (python -m funasr_widget.serve ...) or check the URL "
                f"{self.url}, then call load_model() again. Recording goes on meanwhile; "
                "the segments get their text from retranscribe().",
                code="server-unreachable",
            ) from None
        except RemoteError as err:
            auth = "Authentication" in str(err)
            raise ModelLoadError(
                str(err),
                _TOKEN_FIX if auth else "Fix the server's address or certificate, then call load_model() again.",
                code="server-auth" if auth else "server-tls",
            ) from None
        if response.status_code != 200:
            raise ModelLoadError(
                f"The ASR server {self.url} answered GET /v1/models with HTTP "
                f"{response.status_code}: {_reason(response)}",
                "Is this an OpenAI-compatible speech server (funasr-server, vLLM)?",
                code="server-failed",
            )
        try:
            entries = [m for m in response.json().get("data", []) if isinstance(m, dict)]
        except (ValueError, AttributeError):
            entries = []
        served = [str(m.get("id")) for m in entries]
        if self.model == DEFAULT_MODEL:  # the server's only model, or funasr-server's folder
            self.name = self.model = served[0] if len(served) == 1 else "custom"
        if served and self.model not in served:
            raise ModelLoadError(
                f"The ASR server {self.url} does not serve the model {self.model!r}; it serves {', '.join(served)}.",
                "Pass model= one of those (the class server serves its --model-path folder "
                "under the folder's name, funasr-server as 'custom', vLLM under the name it was "
                "started with), or model='auto' for a server's only model.",
                code="server-model",
            )
        entry = next((m for m in entries if str(m.get("id")) == self.model), {})
        listed = entry.get("options")
        self.accepts = [o for o in listed if o in REQUEST_OPTIONS] if isinstance(listed, list) else OPENAI_OPTIONS
        refused = sorted(set(self.options) - set(self.accepts))
        if refused:
            raise ModelLoadError(
                f"The ASR server {self.url} does not take {', '.join(refused)} for {self.model!r}; "
                f"it takes {', '.join(self.accepts) or 'no option'}.",
                f"Leave {', '.join(refused)} out with this server, or serve the model with "
                "python -m funasr_widget.serve, which takes the options the model has.",
                code="server-options",
            )
        return {"models": served, "rtt_ms": self.rtt_ms}

    def _form(self) -> dict:
        """The options as form fields: booleans as true/false, a word list space-separated."""
        fields = {}
        for name, value in self.options.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, (list, tuple)):
                value = " ".join(value)
            fields[name] = value
        return fields

    def transcribe_partial(self, samples: np.ndarray) -> dict:
        """The open segment's text so far, with a short timeout (a late partial is useless)."""
        return self.transcribe(samples, partial=True)

    def transcribe(self, samples: np.ndarray, *, partial: bool = False) -> dict:
        samples = np.asarray(samples, np.float32).ravel()
        if len(samples) < MIN_SAMPLES:
            return {"text": ""}
        seconds = len(samples) / SAMPLE_RATE
        base, per_s, cap = READ_TIMEOUT_S
        timeout = PARTIAL_TIMEOUT_S if partial else min(base + per_s * seconds, cap)
        data = {"model": self.model, "response_format": "verbose_json", **self._form()}
        audio = wav_bytes(samples)
        response = self._request(
            "POST",
            "/v1/audio/transcriptions",
            timeout=timeout,
            data=data,
            files={"file": ("segment.wav", audio, "audio/wav")},
        )
        status = response.status_code
        if status == 413:
            raise RemoteError(
                f"The server refused a {seconds:.1f} s segment ({len(audio) // 1024} KB) as too "
                f"large (HTTP 413: {_reason(response)}): lower max_segment_s, or raise the "
                "proxy's client_max_body_size."
            )
        if status != 200:
            raise RemoteError(f"The server could not transcribe this segment (HTTP {status}: {_reason(response)})")
        try:
            body = response.json()
        except ValueError:
            raise RemoteError(f"The server's answer is not JSON: {response.text[:200]!r}") from None
        text = body if isinstance(body, str) else body.get("text", "") if isinstance(body, dict) else ""
        result = {"text": re.sub(r"\s+", " ", _TAG.sub("", str(text))).strip()}
        language = body.get("language") if isinstance(body, dict) else None
        if isinstance(language, str) and language not in ("", "unknown", "auto"):
            result["language"] = language
        return result


def probe(server: str, model: str = DEFAULT_MODEL, *, api_key=None, ca_bundle=None, **_ignored) -> dict:
    """For diagnose(): {url, reachable, authenticated, token, model, rtt_ms, message}; never raises,
    never holds the token."""
    info: dict[str, Any] = {
        "url": server,
        "reachable": None,
        "authenticated": None,
        "model": None,
        "rtt_ms": None,
        "message": "",
    }
    engine = None
    try:
        engine = RemoteEngine(server, model, api_key=api_key, ca_bundle=ca_bundle)
        info["token"] = engine._token is not None  # whether one is sent, never what it is
        engine.check()
        info.update(reachable=True, authenticated=True, model=True, rtt_ms=engine.rtt_ms)
        info["message"] = f"model {engine.model!r} served"
    except ModelLoadError as err:
        text = err.message
        info["message"] = text
        info["reachable"] = "cannot be reached" not in text
        if "Authentication failed" in text:
            info["authenticated"] = False
        elif info["reachable"]:
            info["authenticated"] = True
            info["model"] = False
        info["rtt_ms"] = engine.rtt_ms if engine else None
    except Exception as err:  # noqa: BLE001 - a diagnosis never raises
        info["message"] = f"{type(err).__name__}: {err}"[:300]
    finally:
        if engine is not None:
            engine.close()
    return info


def load_remote(model: str, progress=None, **options) -> RemoteEngine:
    """A RemoteEngine whose server was checked (reachable, token taken, model served, the
    options taken); ``model="auto"``: the server's only model."""
    options = {
        **check_remote_options({k: options.get(k) for k in ("server", "api_key", "ca_bundle", "server_partials")}),
        **{k: options[k] for k in REQUEST_OPTIONS if options.get(k) is not None},
    }
    name = DEFAULT_MODEL if model is None else str(model)
    if progress:
        progress(None, f"checking the ASR server {options['server']}")
    engine = RemoteEngine(options.pop("server"), name, **options)
    try:
        engine.check()
    except Exception:
        engine.close()
        raise
    return engine


__all__ = [
    "DEFAULT_MODEL",
    "RemoteEngine",
    "RemoteError",
    "Secret",
    "TOKEN_ENV",
    "check_remote_options",
    "check_server",
    "is_loopback",
    "load_remote",
    "probe",
    "wav_bytes",
]
