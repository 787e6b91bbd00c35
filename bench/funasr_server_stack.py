"""The class server as it was before Ray Serve, kept as the benchmark's baseline (bench/remote.py)
and nothing else: N replicas of FunASR's own ``funasr-server`` behind nginx.

* Each replica is a real ``funasr-server`` (the funasr wheel's console script; it needs
  ``pip install funasr-widget[server]``) bound to 127.0.0.1 on its own port: it has no
  authentication and decodes one request at a time, so it never faces the network and
  the class scales by replicas.
* Debian's nginx, run as this user with its own prefix in a temporary folder, is the only
  thing listening on ``--listen`` (0.0.0.0 by default): it terminates TLS, answers 401
  to a request without the right ``Authorization: Bearer`` token before anything reaches
  FunASR, limits the body size, and balances over the replicas (least connections; a
  replica that fails is skipped and the request passed to the next one).
* No certificate given: a self-signed one is made with openssl (for the host names and
  addresses in ``--hostname``); give its path to the notebooks as ``ca_bundle=``.
* No token file: a random token is written there (mode 600). The token is never printed.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/=-]{16,256}$")  # what nginx's config can hold verbatim
MAX_BODY = "20m"  # a 30 s segment is ~1 MB of WAV; 20 MB leaves room for whole files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def funasr_server_command() -> list[str]:
    """The funasr-server console script next to this Python, or funasr's main module."""
    script = Path(sys.executable).with_name("funasr-server")
    return [str(script)] if script.exists() else [sys.executable, "-m", "funasr.bin.server"]


def threaded_copy(model_path: Path, dest: Path, threads: int) -> Path:
    """The model folder seen through links, with ``ncpu: threads`` in its config.yaml:
    funasr-server passes no ``ncpu``, so funasr takes the config's value (else 4 threads,
    which on a small machine shared by replicas is several times slower)."""
    import yaml

    config = Path(model_path) / "config.yaml"
    if not config.is_file():
        return Path(model_path)
    dest.mkdir(parents=True, exist_ok=True)
    for item in Path(model_path).iterdir():
        link = dest / item.name
        if item.name != "config.yaml" and not link.exists():
            link.symlink_to(item.resolve())
    settings = yaml.safe_load(config.read_text())
    settings["ncpu"] = int(threads)
    (dest / "config.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True))
    return dest


@dataclass
class Replica:
    port: int
    model_path: Path
    device: str
    log: Path
    threads: int | None = None
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(os.environ)
        if self.threads:  # replicas sharing a machine: split its cores between them
            env.update(OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [
                *funasr_server_command(),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--device",
                self.device,
                "--model-path",
                str(self.model_path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )  # its own process group: stopped as a whole
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(self.url + "/health", timeout=2.0, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def wait_healthy(replicas: list[Replica], timeout: float = 300.0) -> None:
    """Until every replica answers /health; raises with the log's tail if one dies or is late."""
    deadline = time.monotonic() + timeout
    waiting = list(replicas)
    while waiting:
        for r in list(waiting):
            if not r.alive():
                tail = r.log.read_text(errors="replace")[-2000:] if r.log.exists() else ""
                raise RuntimeError(f"funasr-server on port {r.port} exited ({r.proc.returncode}):\n{tail}")
            if r.healthy():
                waiting.remove(r)
        if waiting and time.monotonic() > deadline:
            raise TimeoutError(f"funasr-server on port(s) {[r.port for r in waiting]} not ready after {timeout:.0f} s")
        if waiting:
            time.sleep(1.0)


def self_signed(folder: Path, names: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate (and key) for these host names / IP addresses."""
    import ipaddress

    cert, key = folder / "cert.pem", folder / "key.pem"
    sans = []
    for n in names:
        try:
            ipaddress.ip_address(n)
            sans.append(f"IP:{n}")
        except ValueError:
            sans.append(f"DNS:{n}")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            f"/CN={names[0]}",
            "-addext",
            "subjectAltName=" + ",".join(sans),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)
    return cert, key


def read_token(path: Path, create: bool = True) -> str:
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"token file {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    token = path.read_text().strip()
    if not TOKEN_RE.match(token):
        raise ValueError(f"the token in {path} must be 16-256 characters of A-Z a-z 0-9 . _ ~ + / = -")
    return token


def nginx_config(
    prefix: Path,
    *,
    listen: str,
    port: int,
    upstreams: list[int],
    token: str,
    cert: Path,
    key: Path,
    max_body: str = MAX_BODY,
) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstreams)
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""  # root starts it: workers drop to nobody
    return f"""{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server_tokens off;
    map_hash_bucket_size 512;  # the token's line is long
    # The token check, before anything is proxied: only this exact header passes.
    map $http_authorization $funasr_authorized {{
        default 0;
        "Bearer {token}" 1;
    }}
    upstream funasr {{
        least_conn;  # each funasr-server decodes one request at a time
{servers}
        keepalive 16;
    }}
    server {{
        listen {listen}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size {max_body};
        client_body_buffer_size {max_body};  # bodies stay in memory
        default_type application/json;
        if ($funasr_authorized = 0) {{
            return 401;
        }}
        error_page 401 = @unauthorized;
        location @unauthorized {{
            add_header WWW-Authenticate 'Bearer realm="funasr"' always;
            return 401 '{{"detail": "missing or wrong bearer token"}}';
        }}
        error_page 413 = @too_large;
        location @too_large {{
            return 413 '{{"detail": "request body larger than {max_body}"}}';
        }}
        location ~ ^/(v1/audio/transcriptions|v1/models|health)$ {{
            proxy_pass http://funasr;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";  # FunASR never sees the token
            proxy_connect_timeout 2s;
            proxy_read_timeout 120s;
            proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
            proxy_next_upstream_tries 3;
        }}
        location / {{
            return 404 '{{"detail": "not found"}}';
        }}
    }}
}}
"""


@dataclass
class Stack:
    """N funasr-server replicas and nginx in front of them; a context manager."""

    model_path: Path
    replicas: int = 2
    port: int = 8443
    listen: str = "0.0.0.0"
    token_file: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    device: str = "cpu"
    hostnames: list[str] = field(default_factory=lambda: ["localhost", "127.0.0.1"])
    max_body: str = MAX_BODY
    threads: int | None = None
    folder: Path | None = None  # where nginx's prefix and the logs go (a temporary folder if None)
    workers: list[Replica] = field(default_factory=list)
    nginx: subprocess.Popen | None = None

    def __post_init__(self):
        self._tmp = None
        if self.folder is None:
            self._tmp = tempfile.mkdtemp(prefix="funasr-serve-")
            self.folder = Path(self._tmp)
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o711)  # nginx's workers (nobody, when started by root) reach their temp dirs

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.listen in ("0.0.0.0", "::") else self.listen
        return f"https://{host}:{self.port}"

    def start_replicas(self, timeout: float = 300.0) -> None:
        model = Path(self.model_path)
        if self.threads:
            model = threaded_copy(model, self.folder / "model", self.threads)
        for _ in range(self.replicas):
            r = Replica(free_port(), model, self.device, self.folder / f"replica-{len(self.workers)}.log", self.threads)
            r.start()
            self.workers.append(r)
        wait_healthy(self.workers, timeout)

    def start_nginx(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise FileNotFoundError("nginx is not installed: sudo apt-get install nginx (Debian's package)")
        token = read_token(self.token_file or self.folder / "token")
        if self.cert is None or self.key is None:
            self.cert, self.key = self_signed(self.folder, self.hostnames)
        conf = self.folder / "nginx.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the token
        with os.fdopen(fd, "w") as f:
            f.write(
                nginx_config(
                    self.folder,
                    listen=self.listen,
                    port=self.port,
                    upstreams=[r.port for r in self.workers],
                    token=token,
                    cert=Path(self.cert).resolve(),
                    key=Path(self.key).resolve(),
                    max_body=self.max_body,
                )
            )
        log = open(self.folder / "nginx.out", "ab")
        self.nginx = subprocess.Popen(
            [nginx, "-p", str(self.folder), "-c", str(conf), "-e", str(self.folder / "error.log")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self._wait_nginx()

    def _wait_nginx(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        host = "127.0.0.1" if self.listen in ("0.0.0.0", "::") else self.listen
        while time.monotonic() < deadline:
            if self.nginx.poll() is not None:
                raise RuntimeError("nginx exited: " + (self.folder / "error.log").read_text(errors="replace")[-2000:])
            try:
                socket.create_connection((host, self.port), timeout=1.0).close()
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"nginx not listening on {self.port} after {timeout:.0f} s")

    def start(self, timeout: float = 300.0) -> Stack:
        try:
            self.start_replicas(timeout)
            self.start_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            try:
                os.killpg(self.nginx.pid, signal.SIGTERM)
                self.nginx.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.nginx.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for r in self.workers:
            r.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
