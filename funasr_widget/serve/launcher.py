"""``python -m funasr_widget.serve``: Ray Serve (the Recognizer replicas and the ingress)
with nginx in front, and everything stopped together.

On one machine the launcher starts its own Ray, bound to 127.0.0.1 only (no Ray port
faces the network); with ``--address`` it joins an existing cluster (``ray start --head``
on this machine, ``ray start --address`` on the others) and Serve places the replicas
across it. SIGINT, SIGTERM and SIGHUP (a closed terminal) stop nginx, the Serve
application and the Ray it started. The token file is watched: a line removed (a token
revoked) or added reaches nginx within ``WATCH_S`` (the app reads the file itself).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import tokens
from .children import boosted, free_port, session, unboost
from .nginx import Nginx, self_signed

APP = "funasr-widget"
MAX_SECONDS = 60.0  # per request: 60 s of 16-bit PCM is 1.9 MB
WATCH_S = 1.0
SIZE_RE = re.compile(r"^(\d+)([kKmM]?)$")
RAY_START_S, RAY_STOP_S, RAY_TRIES, START_BOOST = 120.0, 30.0, 5, 10
# No Python workers started ahead of need: at start-up they would compete with the agents the
# raylet waits for (see start_ray); the replicas start their own.
QUIET_START = {"RAY_enable_worker_prestart": "0", "RAY_prestart_worker_first_driver": "0"}
# `ray start`'s ports, chosen here: fixed defaults would clash with a second cluster on the host,
# and with dynamic ones the raylet gives its agents 15 s to report theirs, which a busy small
# machine misses (the raylet then aborts).
RAY_PORTS = (
    "ray-client-server-port",
    "dashboard-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "runtime-env-agent-port",
)


def parse_size(text: str) -> int:
    """'20m' -> bytes (nginx's spelling: a number, then k or m)."""
    match = SIZE_RE.match(str(text).strip())
    if not match:
        raise ValueError(f"a size is a number of bytes with an optional k or m, like 4m; got {text!r}")
    return int(match[1]) * {"": 1, "k": 1024, "m": 1024**2}[match[2].lower()]


def ray_token() -> None:
    """In token mode `ray start --head` needs a token and makes none (only ``ray.init`` does):
    ~/.ray/auth_token made here, readable by its owner only, where Ray would find none."""
    if os.environ.get("RAY_AUTH_MODE") != "token" or {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ):
        return
    path = Path.home() / ".ray" / "auth_token"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))


def start_ray(log_path: Path, options: list[str], join: str | None = None) -> tuple[subprocess.Popen, str]:
    """``ray start --block`` on 127.0.0.1 with `options`: a head (on a free port), or a node that
    joins the cluster at `join`; returns the process once Ray reports it started, and the
    cluster's address. Its own session: a terminal's SIGHUP or Ctrl-C reaches the caller only,
    which stops it with :func:`stop_ray` (and if the caller is killed outright, the kernel sends
    it SIGTERM). Tried again if it fails to start: its raylet gives its agents a fixed 15 s to
    come up (ray-project/ray#65983), which a busy machine can miss; for the same reason it
    starts START_BOOST nice levels above the caller where that is allowed (root), and goes
    back to the caller's level once up. Its output goes to `log_path` (appended)."""
    if join is None:
        ray_token()
    for _ in range(RAY_TRIES):
        port = free_port()
        command = [str(Path(sys.executable).with_name("ray")), "start", "--block", *options]
        command += [f"--address={join}"] if join else ["--head", f"--port={port}"]
        command += ["--node-ip-address=127.0.0.1", "--include-log-monitor=false", "--disable-usage-stats"]
        command += [f"--{name}={free_port()}" for name in RAY_PORTS]
        start = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            node = subprocess.Popen(
                command,
                env={**os.environ, **QUIET_START},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=boosted(START_BOOST),
            )
        try:
            deadline = time.monotonic() + RAY_START_S
            while node.poll() is None:
                with open(log_path, "rb") as log:
                    log.seek(start)
                    if b"Ray runtime started" in log.read():
                        unboost(node.pid)  # its replicas decode at the caller's priority
                        return node, join or f"127.0.0.1:{port}"
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Ray did not start in {RAY_START_S:.0f} s; see {log_path}")
                time.sleep(0.5)
        except BaseException:  # timed out, or the caller was stopped meanwhile
            stop_ray(node)
            raise
        stop_ray(node)  # what the failed start left
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"ray start failed {RAY_TRIES} times; the last lines of {log_path}:\n{tail}")


def stop_ray(node: subprocess.Popen) -> None:
    """Stop a :func:`start_ray` node and every process of its session."""
    if node.poll() is None:
        node.terminate()  # ray start --block stops every Ray process it started
        try:
            node.wait(RAY_STOP_S)
        except subprocess.TimeoutExpired:
            pass
    node.wait()
    for pid in session(node.pid):  # whatever is left of its session (a worker slow to exit)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Stop(Exception):
    """A signal asked the launcher to stop."""


@dataclass
class Launcher:
    model_path: Path
    token_file: Path
    folder: Path
    replicas: int = 2
    port: int = 8443
    listen: str = "0.0.0.0"
    cert: Path | None = None
    key: Path | None = None
    hostnames: list[str] = field(default_factory=lambda: ["localhost", "127.0.0.1"])
    device: str = "cpu"
    threads: int | None = None
    max_body: int = 4 * 1024**2
    max_seconds: float = MAX_SECONDS
    address: str | None = None
    serve_port: int = 0
    nginx: Nginx | None = None

    def __post_init__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)  # its config holds the tokens; nginx spools bodies elsewhere
        self.serve_port = self.serve_port or free_port()
        self._serve_started = False
        self._ray_head: subprocess.Popen | None = None  # the one-host Ray we started
        self._token_stamp = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.listen in ("0.0.0.0", "::") else self.listen
        return f"https://{host}:{self.port}"

    @property
    def served_name(self) -> str:
        return self.model_path.name

    def _read_tokens(self) -> dict[str, str]:
        if not self.token_file.exists():
            tokens.create(self.token_file)
        stat = self.token_file.stat()
        self._token_stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        return tokens.read(self.token_file)

    def _start_ray(self) -> None:
        """Join ``--address``, or start a one-host Ray head, then connect as its driver."""
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Every Ray process of a cluster in one auth mode (mixed modes fail): token, from
        # ~/.ray/auth_token. It also guards Serve's replicas' own gRPC port, which Ray binds
        # on every interface.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        if not self.address:
            # One host: Ray binds and advertises 127.0.0.1 only (its ports are a control plane).
            # Set before Ray is imported: the driver reads it too.
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
            self.address = self._start_head()
        import ray

        ray.init(address=self.address, log_to_driver=False)

    def _start_head(self) -> str:
        """A one-host head for this launcher: `start_ray`, with every CPU the replicas need."""
        cpus = max(os.cpu_count() or 1, self.replicas * (self.threads or 1))
        options = [f"--num-cpus={cpus}", "--include-dashboard=false"]
        self._ray_head, address = start_ray(self.folder / "ray.log", options)
        return address

    def application(self):
        from .app import Ingress
        from .deployment import Recognizer

        threads = str(self.threads or 1)
        recognizer = Recognizer.options(
            num_replicas=self.replicas,
            ray_actor_options={
                "num_cpus": self.threads or 1,
                "runtime_env": {
                    "env_vars": {
                        "FUNASR_WIDGET_THREADS": threads,
                        "OMP_NUM_THREADS": threads,
                        "MKL_NUM_THREADS": threads,
                    }
                },
            },
        ).bind(str(self.model_path), self.device)
        # The ingress reads the token file itself: on the head, where the launcher and the file are.
        ingress = Ingress.options(ray_actor_options={"num_cpus": 0, "resources": {"node:__internal_head__": 0.01}})
        return ingress.bind(
            recognizer, self.served_name, self.max_seconds, self.max_body, str(self.token_file.resolve())
        )

    def start(self) -> Launcher:
        students = self._read_tokens()
        if self.cert is None or self.key is None:
            self.cert, self.key = self_signed(self.folder, self.hostnames)
        self._start_ray()
        from ray import serve

        serve.start(http_options={"host": "127.0.0.1", "port": self.serve_port}, proxy_location="HeadOnly")
        self._serve_started = True
        serve.run(self.application(), name=APP, route_prefix="/")
        self.nginx = Nginx(
            self.folder,
            listen=self.listen,
            port=self.port,
            upstream=self.serve_port,
            cert=self.cert.resolve(),
            key=self.key.resolve(),
            max_body=self.max_body,
        )
        self.nginx.start(students)
        return self

    def tick(self) -> None:
        """Once per WATCH_S (after start()): new tokens to nginx; logs bounded; nginx alive."""
        assert self.nginx is not None, "start() first"
        if not self.nginx.alive():
            raise RuntimeError(f"nginx exited; see {self.folder / 'error.log'}")
        self.nginx.rotate_logs()
        try:
            stat = self.token_file.stat()
            if (stat.st_mtime_ns, stat.st_size, stat.st_ino) == self._token_stamp:
                return
            students = self._read_tokens()
        except (OSError, tokens.TokenFileError) as err:
            print(f"token file not reloaded, the previous tokens stay: {err}", file=sys.stderr, flush=True)
            return
        self.nginx.reload(students)  # the app reads the file itself
        print(f"tokens reloaded: {len(students)} student(s)", flush=True)

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        if "ray" in sys.modules:
            import ray
            from ray import serve

            if self._serve_started and ray.is_initialized():
                if self._ray_head is not None:  # ours: all of Serve goes
                    serve.shutdown()
                else:  # a shared cluster: only our application goes
                    serve.delete(APP)
            if ray.is_initialized():
                ray.shutdown()
        self._stop_head()

    def _stop_head(self) -> None:
        head, self._ray_head = self._ray_head, None
        if head is not None:
            stop_ray(head)

    def __enter__(self) -> Launcher:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def _stop(signum, _frame) -> None:
    raise Stop(signal.Signals(signum).name)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m funasr_widget.serve",
        description="A class's ASR server: Ray Serve replicas of the widget's engine behind nginx (TLS, tokens).",
    )
    p.add_argument(
        "--model-path", required=True, type=Path, help="a local segment-model folder (served under its name)"
    )
    p.add_argument("--replicas", type=int, default=2, help="Recognizer replicas (default 2)")
    p.add_argument("--port", type=int, default=8443, help="nginx's HTTPS port (default 8443)")
    p.add_argument(
        "--listen", default="0.0.0.0", help="nginx's address (default 0.0.0.0; 127.0.0.1: this machine only)"
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=Path("~/.funasr-widget-tokens").expanduser(),
        help=f"the students' tokens, {tokens.FORMAT}; mode 600; made with one token if missing",
    )
    p.add_argument("--cert", type=Path, help="TLS certificate (PEM); default: a self-signed one, FOLDER/cert.pem")
    p.add_argument("--key", type=Path, help="the certificate's key (PEM)")
    p.add_argument(
        "--hostname", action="append", help="a host name or address for the self-signed certificate (repeatable)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--threads", type=int, help="torch threads (and Ray CPUs) per replica (default 1)")
    p.add_argument("--max-body", default="4m", help="largest request body, nginx's spelling (default 4m)")
    p.add_argument(
        "--max-seconds", type=float, default=MAX_SECONDS, help=f"longest audio per request (default {MAX_SECONDS:g})"
    )
    p.add_argument(
        "--folder", type=Path, help="nginx's config and logs, the certificate (default ~/.funasr-widget-serve)"
    )
    p.add_argument("--address", help="join this Ray cluster (ray start --head's address) instead of starting one")
    return p


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if not args.model_path.is_dir():
        p.error(f"--model-path {args.model_path} is not a folder")
    if (args.cert is None) != (args.key is None):
        p.error("--cert and --key go together")
    if args.replicas < 1:
        p.error("--replicas must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    if not 1 <= args.max_seconds <= 600:
        p.error("--max-seconds must be between 1 and 600")
    try:
        max_body = parse_size(args.max_body)
    except ValueError as err:
        p.error(f"--max-body: {err}")
    try:  # refused before anything starts: a token file others can read
        if args.token_file.exists():
            tokens.read(args.token_file)
    except tokens.TokenFileError as err:
        p.error(str(err))
    launcher = Launcher(
        args.model_path.resolve(),
        args.token_file,
        (args.folder or Path("~/.funasr-widget-serve").expanduser()).resolve(),
        replicas=args.replicas,
        port=args.port,
        listen=args.listen,
        cert=args.cert,
        key=args.key,
        hostnames=args.hostname or ["localhost", "127.0.0.1", socket.gethostname()],
        device=args.device,
        threads=args.threads,
        max_body=max_body,
        max_seconds=args.max_seconds,
        address=args.address,
    )
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    try:
        print(f"Starting Ray Serve with {args.replicas} replica(s) of {args.model_path.name}...", flush=True)
        launcher.start()
        print(
            f"Serving {launcher.served_name!r} at {launcher.url} (Ray Serve on 127.0.0.1:{launcher.serve_port}; "
            f"tokens in {args.token_file}; certificate {launcher.cert}; logs in {launcher.folder}). Ctrl-C stops.",
            flush=True,
        )
        while True:
            time.sleep(WATCH_S)
            launcher.tick()
    except (Stop, KeyboardInterrupt) as why:
        print(f"Stopping ({why or 'SIGINT'}).", flush=True)
    finally:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        launcher.stop()
