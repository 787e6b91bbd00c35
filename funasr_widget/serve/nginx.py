"""nginx in front of Ray Serve: the only listener on the network.

It terminates TLS (forward-secret AEAD suites only), refuses a request without one of the
students' tokens before anything reaches Serve (a case-sensitive regex per token, never
``map``'s case-insensitive strings; the app checks again in constant time), limits
connections and POSTs per client address, keeps short client timeouts and spills request
bodies to disk above a small buffer. It forwards only the three API paths, normalised, and
never replays a POST on failure. Its log names the student, never the token or the audio.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .children import die_with_parent

# TLS 1.2's ECDHE + AEAD suites (TLS 1.3's are all such).
CIPHERS = ":".join(
    f"ECDHE-{key}-{cipher}"
    for cipher in ("AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305")
    for key in ("ECDSA", "RSA")
)
WORKER_CONNECTIONS = 8192  # idle connections cost one each: far more than one client may open
CONNECTIONS_PER_CLIENT = 32  # requests in progress per address (a classroom behind one NAT: raise it)
POSTS_PER_SECOND = 20  # per address, with a burst of 4 s worth
LOG_LIMIT = 10 * 1024 * 1024  # bytes per log before it is rotated (one old copy kept)


def self_signed(folder: Path, names: list[str]) -> tuple[Path, Path]:
    """``folder/cert.pem`` and its key for these host names / IP addresses, made once
    (kept across restarts, so the notebooks' ca_bundle stays valid)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    if cert.is_file() and key.is_file():
        return cert, key
    sans = []
    for n in names:
        try:
            ipaddress.ip_address(n)
            sans.append(f"IP:{n}")
        except ValueError:
            sans.append(f"DNS:{n}")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-days", "365", "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={names[0]}"]
        + ["-addext", "subjectAltName=" + ",".join(sans), "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)
    return cert, key


def token_map(students: dict[str, str]) -> str:
    """nginx ``map`` lines: each token as an anchored, case-sensitive regex (its alphabet,
    tokens.TOKEN_RE, holds no regex metacharacter) giving the student's name."""
    return "\n".join(f'        "~^Bearer {token}$" "{name}";' for name, token in students.items())


def config(
    prefix: Path,
    *,
    spool: Path,
    listen: str,
    port: int,
    upstream: int,
    students: dict[str, str],
    cert: Path,
    key: Path,
    max_body: int,
) -> str:
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""  # root starts it: workers drop to nobody
    api = {"/v1/audio/transcriptions": "POST", "/v1/models": "GET", "/health": "GET"}
    locations = "\n".join(
        f"""        location = {path} {{
            limit_except {method} {{ deny all; }}
            {"limit_req zone=posts burst=" + str(4 * POSTS_PER_SECOND) + " nodelay;" if method == "POST" else ""}
            proxy_pass http://serve$uri;  # the normalised path, no raw URI, no query
        }}"""
        for path, method in api.items()
    )
    return f"""{user}worker_processes 1;
worker_rlimit_nofile {2 * WORKER_CONNECTIONS + 64};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {WORKER_CONNECTIONS}; }}
http {{
    log_format student '$remote_addr $funasr_student [$time_local] "$request_method $uri" $status '
                       '$request_length $body_bytes_sent $request_time';
    access_log {prefix}/access.log student;
    client_body_temp_path {spool}/body;
    proxy_temp_path {spool}/proxy;
    fastcgi_temp_path {spool}/fastcgi;
    uwsgi_temp_path {spool}/uwsgi;
    scgi_temp_path {spool}/scgi;
    server_tokens off;
    default_type application/json;

    client_max_body_size {max_body};
    client_body_buffer_size 16k;  # larger bodies go to a file, not memory
    client_header_timeout 10s;
    client_body_timeout 10s;
    send_timeout 30s;
    keepalive_timeout 30s;
    large_client_header_buffers 4 8k;
    limit_conn_zone $binary_remote_addr zone=per_client:10m;
    limit_req_zone $binary_remote_addr zone=posts:10m rate={POSTS_PER_SECOND}r/s;
    limit_conn_status 429;
    limit_req_status 429;
    limit_conn_log_level warn;
    limit_req_log_level warn;

    map $http_authorization $funasr_student {{
        default "";
{token_map(students)}
    }}
    upstream serve {{
        server 127.0.0.1:{upstream};
        keepalive 16;
    }}
    server {{
        listen {listen}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers {CIPHERS};
        ssl_prefer_server_ciphers on;
        ssl_session_tickets off;
        limit_conn per_client {CONNECTIONS_PER_CLIENT};

        if ($funasr_student = "") {{
            return 401;
        }}
        error_page 401 = @unauthorized;
        location @unauthorized {{
            add_header WWW-Authenticate 'Bearer realm="funasr"' always;
            return 401 '{{"error": {{"message": "missing or wrong bearer token", "code": 401}}}}';
        }}
        error_page 413 = @too_large;
        location @too_large {{
            return 413 '{{"error": {{"message": "request body larger than {max_body} bytes", "code": 413}}}}';
        }}
        error_page 429 = @busy;
        location @busy {{
            return 429 '{{"error": {{"message": "too many requests from this address; slow down", "code": 429}}}}';
        }}

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_connect_timeout 5s;
        proxy_read_timeout 300s;
        proxy_next_upstream off;  # a POST is never replayed (one bomb, one replica at most)
        proxy_request_buffering on;
{locations}
        location / {{
            return 404 '{{"error": {{"message": "not found", "code": 404}}}}';
        }}
    }}
}}
"""


class Nginx:
    """One nginx master (own prefix in ``folder``), started in its own process group."""

    def __init__(self, folder: Path, **settings):
        self.folder, self.settings = folder, settings
        self.proc: subprocess.Popen | None = None
        self.spool = self._spool()

    @staticmethod
    def _spool() -> Path:
        """Where request bodies spill: a private folder its workers own (started by root, they
        run as nobody, who cannot reach into a private --folder such as root's home)."""
        spool = Path(tempfile.mkdtemp(prefix="funasr-widget-nginx-"))
        if os.geteuid() == 0:
            os.chown(spool, pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
        return spool

    def write(self, students: dict[str, str]) -> Path:
        path = self.folder / "nginx.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the tokens
        with os.fdopen(fd, "w") as f:
            f.write(config(self.folder, spool=self.spool, students=students, **self.settings))
        return path

    def start(self, students: dict[str, str], timeout: float = 15.0) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise FileNotFoundError("nginx is not installed: apt-get install nginx (Debian's package)")
        conf = self.write(students)
        log = open(self.folder / "nginx.out", "ab")
        self.proc = subprocess.Popen(
            [binary, "-p", str(self.folder), "-c", str(conf), "-e", str(self.folder / "error.log")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()
        host = "127.0.0.1" if self.settings["listen"] in ("0.0.0.0", "::") else self.settings["listen"]
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: " + (self.folder / "error.log").read_text(errors="replace")[-2000:])
            try:
                socket.create_connection((host, self.settings["port"]), timeout=1.0).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"nginx not listening on {self.settings['port']} after {timeout:.0f} s"
                    ) from None
                time.sleep(0.2)

    @property
    def _started(self) -> subprocess.Popen:
        """The master process, which start() made."""
        assert self.proc is not None, "nginx was not started"
        return self.proc

    def reload(self, students: dict[str, str]) -> None:
        """New tokens: the config rewritten, then SIGHUP (nginx re-reads it; old workers finish)."""
        self.write(students)
        self._started.send_signal(signal.SIGHUP)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rotate_logs(self) -> None:
        """Each log past LOG_LIMIT becomes ``.1`` (the older one dropped); USR1 reopens them."""
        rotated = False
        for name in ("access.log", "error.log"):
            log = self.folder / name
            if log.exists() and log.stat().st_size > LOG_LIMIT:
                log.replace(log.with_suffix(".log.1"))
                rotated = True
        if rotated and self.alive():
            self._started.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        if self.alive():
            self._kill()
        shutil.rmtree(self.spool, ignore_errors=True)

    def _kill(self) -> None:
        try:
            os.killpg(self._started.pid, signal.SIGTERM)  # its workers are in its group
            self._started.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self._started.pid, signal.SIGKILL)
            self._started.wait(5)
        except ProcessLookupError:
            pass
