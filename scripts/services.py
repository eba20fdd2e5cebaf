"""Local services for a team-like setup, for tests and for people: PostgreSQL, an S3-compatible object
store (moto) and an MLflow tracking server on them, all on 127.0.0.1 only.

    eval "$(python scripts/services.py up)"      # or scripts/services.sh up
    dvc repro                                     # stage runs go to the server, artifacts to the bucket
    dvc push                                      # the DVC remote is the same bucket (.dvc/config.local)
    python scripts/services.py down

`up` starts PostgreSQL (initdb + pg_ctl in a temp data dir, as an unprivileged user when run as root),
`moto_server`, and `mlflow server --backend-store-uri postgresql://... --artifacts-destination
s3://<bucket>/mlflow` on free ports, waits until each answers, points the project's DVC remote at
s3://<bucket>/dvc in .dvc/config.local (not committed), and prints `export NAME=value` lines.
`down` stops everything `up` started (pids and paths in <state>/state.json) and removes the data.
The object store keeps its objects in memory: `down` loses them (it is a test and demo store; a
team points the same variables at MinIO or a cloud bucket instead).

Importable too (tests): `start(state_dir)` returns a `Services` whose `env` holds the variables.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
BUCKET = "fairaug"
REMOTE = "services"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
STATE_FILE = "state.json"
START_TIMEOUT_S = 120


class ServiceError(RuntimeError):
    """A service did not start or stop; the message names it and its log."""


@dataclass
class Services:
    state_dir: str
    bucket: str = BUCKET
    pg_data: str = ""
    pg_port: int = 0
    pg_user: str = ""
    pg_password: str = ""
    s3_port: int = 0
    mlflow_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def backend_uri(self) -> str:
        return f"postgresql+psycopg2://fairaug:{self.pg_password}@{HOST}:{self.pg_port}/mlflow"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def tracking_uri(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def env(self) -> dict[str, str]:
        """What a client (dvc, fairaug, mlflow) needs; no secret but the dummy S3 keys."""
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
                **DUMMY_CREDENTIALS}  # fmt: skip

    def save(self) -> None:
        path = Path(self.state_dir) / STATE_FILE
        path.write_text(json.dumps(asdict(self), indent=1))
        path.chmod(0o600)  # holds the database password

    @classmethod
    def load(cls, state_dir: Path) -> Services:
        path = Path(state_dir) / STATE_FILE
        if not path.exists():
            raise ServiceError(f"no services recorded in {path}: nothing to stop")
        return cls(**json.loads(path.read_text()))

    def log(self, name: str) -> Path:
        return Path(self.state_dir) / f"{name}.log"

    # --- the MLflow server alone: tests stop and restart it under a running pipeline ---------------
    def start_mlflow(self, port: int | None = None, workers: int = 2) -> None:
        self.mlflow_port = port or self.mlflow_port or free_port()
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(self.mlflow_port),
               "--workers", str(workers), "--backend-store-uri", self.backend_uri,
               "--artifacts-destination", f"s3://{self.bucket}/mlflow"]  # fmt: skip
        # no job runner: its seven huey consumers serve GenAI jobs, nothing the pipeline uses
        env = {**os.environ, **self.env, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI")
        self.pids["mlflow"] = spawn(cmd, self.log("mlflow"), env)
        self.save()
        wait_http(f"{self.tracking_uri}/health", "mlflow server", self.log("mlflow"), self.pids["mlflow"])

    def stop_mlflow(self) -> None:
        stop_pid(self.pids.pop("mlflow", None), timeout_s=5)
        self.save()

    def stop(self) -> None:
        """Stop what was started, newest first; remove the database's data dir."""
        self.stop_mlflow()
        stop_pid(self.pids.pop("s3", None))
        if self.pg_data and Path(self.pg_data, "data", "postmaster.pid").exists():
            run_as(self.pg_user or None, [pg_bin("pg_ctl"), "stop", "-D", str(Path(self.pg_data, "data")), "-m", "fast", "-w"],
                   check=False)  # fmt: skip
        stop_pid(self.pids.pop("postgres", None))
        if self.pg_data:
            with contextlib.suppress(OSError):
                shutil.copyfile(Path(self.pg_data, "postgres.log"), self.log("postgres"))
            shutil.rmtree(self.pg_data, ignore_errors=True)
        (Path(self.state_dir) / STATE_FILE).unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def spawn(cmd: list[str], log: Path, env: dict, user: str | None = None) -> int:
    """Start ``cmd`` detached (its own session, so that a Ctrl-C in the shell leaves it), output to ``log``."""
    with open(log, "ab") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True, user=user)  # fmt: skip
    return process.pid


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child, exited: reap it
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # exited, left for another process to reap (its starter)
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def stop_pid(pid: int | None, timeout_s: float = 15) -> None:
    """SIGTERM the process group ``pid`` leads (what `spawn` started), SIGKILL it after ``timeout_s``."""
    if not alive(pid):
        return
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.1)


def wait_http(url: str, name: str, log: Path, pid: int, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            raise ServiceError(f"{name} exited while starting; see {log}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise ServiceError(f"{name} did not answer {url} within {timeout_s:.0f} s; see {log}:\n{tail(log)}")


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


# --- PostgreSQL ----------------------------------------------------------------------------------
def pg_bin(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise ServiceError(f"PostgreSQL's {name} not found: install Debian's postgresql (make services-deps)")
    return found


def unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as `postgres` (Debian's package makes it)
    or `nobody`; otherwise as ourselves (None)."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ServiceError("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")


def run_as(user: str | None, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, user=user, cwd="/")
    if check and result.returncode != 0:
        raise ServiceError(f"{' '.join(cmd[:2])} failed ({result.returncode}): {(result.stderr or result.stdout).strip()[-2000:]}")
    return result


def start_postgres(services: Services) -> None:
    user = unprivileged_user()
    services.pg_user = user or ""
    # a data dir the unprivileged user can reach: not under a 0700 pytest or home directory
    services.pg_data = tempfile.mkdtemp(prefix="fairaug-pg-")
    services.pg_password = secrets.token_hex(16)
    services.pg_port = free_port()
    services.save()
    if user:
        shutil.chown(services.pg_data, user)
    pwfile = Path(services.pg_data) / "pwfile"
    pwfile.write_text(services.pg_password + "\n")
    if user:
        shutil.chown(pwfile, user)
    data = str(Path(services.pg_data) / "data")
    run_as(user, [pg_bin("initdb"), "-D", data, "-U", "fairaug", f"--pwfile={pwfile}", "--auth=scram-sha-256",
                  "-E", "UTF8", "--no-sync"])  # fmt: skip
    pwfile.unlink()
    options = f"-c listen_addresses={HOST} -p {services.pg_port} -k {services.pg_data} -c fsync=off"
    log = Path(services.pg_data) / "postgres.log"  # the unprivileged user cannot reach a 0700 state dir
    run_as(user, [pg_bin("pg_ctl"), "start", "-D", data, "-o", options, "-l", str(log), "-w", "-t", "60"])
    services.pids["postgres"] = int(Path(data, "postmaster.pid").read_text().split()[0])
    services.save()
    import psycopg2

    connection = psycopg2.connect(host=HOST, port=services.pg_port, user="fairaug",
                                  password=services.pg_password, dbname="postgres")  # fmt: skip
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("CREATE DATABASE mlflow")
    connection.close()


# --- the object store ----------------------------------------------------------------------------
def spawn_s3(services: Services) -> None:
    services.s3_port = free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(services.s3_port)]
    services.pids["s3"] = spawn(cmd, services.log("s3"), {**os.environ, **DUMMY_CREDENTIALS})
    services.save()


def wait_s3(services: Services) -> None:
    """Wait until the object store answers, then make the bucket."""
    wait_http(f"{services.s3_endpoint}/moto-api/", "moto_server (S3)", services.log("s3"), services.pids["s3"])
    import boto3

    s3 = boto3.client("s3", endpoint_url=services.s3_endpoint, **_boto_credentials())
    s3.create_bucket(Bucket=services.bucket)


def _boto_credentials() -> dict:
    return {"aws_access_key_id": DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "region_name": DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"]}  # fmt: skip


# --- DVC -----------------------------------------------------------------------------------------
def configure_dvc_remote(project: Path, services: Services, name: str = REMOTE) -> None:
    """The project's default DVC remote: s3://<bucket>/dvc on the object store, in .dvc/config.local
    (not committed); credentials come from the environment, never from a config file."""
    for cmd in (["dvc", "remote", "add", "--local", "-f", "-d", name, f"s3://{services.bucket}/dvc"],
                ["dvc", "remote", "modify", "--local", name, "endpointurl", services.s3_endpoint]):
        result = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(cmd)} failed in {project}: {result.stderr.strip()}")


def start(state_dir: Path, project: Path | None = None, bucket: str = BUCKET, mlflow_workers: int = 2) -> Services:
    """Start PostgreSQL, the object store and the MLflow server; on a failure stop what started."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    if (state_dir / STATE_FILE).exists():
        raise ServiceError(f"services already recorded in {state_dir / STATE_FILE}: run `down` first")
    services = Services(str(state_dir), bucket=bucket)
    try:
        spawn_s3(services)  # starts while PostgreSQL does
        start_postgres(services)
        wait_s3(services)
        services.start_mlflow(workers=mlflow_workers)
        if project is not None:
            configure_dvc_remote(project, services)
    except BaseException:
        services.stop()
        raise
    return services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "env"])
    parser.add_argument("--state", type=Path, default=Path(".services"),
                        help="where pids, logs and ports are kept (default .services/)")
    parser.add_argument("--project", type=Path, default=Path("."),
                        help="DVC project whose .dvc/config.local gets the remote (default: here, if it is one)")
    parser.add_argument("--bucket", default=BUCKET)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            project = args.project if (args.project / ".dvc").is_dir() else None
            services = start(args.state, project, args.bucket)
        elif args.command == "env":
            services = Services.load(args.state)
        else:
            Services.load(args.state).stop()
            print(f"# services in {args.state.resolve()} stopped", file=sys.stderr)
            return 0
    except ServiceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, value in services.env.items():
        print(f"export {name}={value}")
    if args.command == "up":
        print(f"# PostgreSQL {HOST}:{services.pg_port}, S3 {services.s3_endpoint} (bucket {services.bucket}), "
              f"MLflow {services.tracking_uri}; logs in {services.state_dir}; stop: {Path(sys.argv[0]).name} down",
              file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
