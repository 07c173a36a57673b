"""RDS IAM database authentication, reproduced on loopback: a fake EKS Pod Identity agent that hands
out short-lived AWS credentials and replaces them every second, and the check RDS makes of an auth
token, run by PostgreSQL itself through PAM.

RDS authenticates an IAM database user through PAM too (a failed token is `FATAL: PAM authentication
failed for user ...`): here pg_hba.conf sends the chosen users to a PAM service whose pam_exec runs
this file as a script (`expose_authtok` passes it the password, the token, on standard input) and
accepts the connection only if the token is a valid SigV4 presigned `connect` request for that user,
this server's host:port and region, signed with credentials the agent issued and that have not
expired, within the token's lifetime (RDS: 15 minutes, shortened here to seconds). The app's botocore
gets its credentials from the agent exactly as in a pod (AWS_CONTAINER_CREDENTIALS_FULL_URI with the
Authorization token read from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE).

One limit belongs to this reproduction only: pam_exec passes at most PAM_MAX_RESP_SIZE - 1 = 511
bytes of the password. A token is about 330 bytes plus its session token (X-Amz-Security-Token),
so the agent here issues short session tokens; real Pod Identity session tokens are far longer and
their RDS tokens exceed 511 bytes, which RDS accepts.

The script part uses only the standard library: PostgreSQL's user runs it with a system Python.
"""

import contextlib
import datetime
import hashlib
import hmac
import http.server
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

PAM_DIRECTORY = Path("/etc/pam.d")
EMPTY_PAYLOAD_SHA256 = hashlib.sha256(b"").hexdigest()
CLOCK_SKEW = 5.0  # seconds a token may be dated ahead of this clock


class Refused(Exception):
    """Why RDS would refuse the token."""


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def verify(token: str, user: str, state: dict, now: float) -> str:
    """The access key id that signed a valid token for user; raises Refused otherwise.

    state: {"endpoint": "host:port", "region": ..., "token_lifetime": seconds,
            "credentials": {access key id: {"secret": ..., "session_token": ..., "expires": epoch}}}
    """
    endpoint, separator, query = token.partition("/?")
    if not separator:
        raise Refused("not a presigned request")
    if endpoint != state["endpoint"]:
        raise Refused(f"signed for {endpoint}, this server is {state['endpoint']}")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError as error:
        raise Refused(f"malformed query: {error}") from None
    params = dict(pairs)
    if len(params) != len(pairs):
        raise Refused("a parameter is repeated")
    try:
        key_id, day, region, service, terminator = params["X-Amz-Credential"].split("/")
        signed_at = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        expires_in = int(params["X-Amz-Expires"])
        signature = params["X-Amz-Signature"]
        action, db_user = params["Action"], params["DBUser"]
        algorithm, signed_headers = params["X-Amz-Algorithm"], params["X-Amz-SignedHeaders"]
    except (KeyError, ValueError) as error:
        raise Refused(f"missing or malformed parameter: {error}") from None
    if (action, algorithm, signed_headers) != ("connect", "AWS4-HMAC-SHA256", "host"):
        raise Refused(f"not a SigV4 connect request: {action} {algorithm} {signed_headers}")
    if db_user != user:
        raise Refused(f"signed for database user {db_user}")
    if (region, service, terminator) != (state["region"], "rds-db", "aws4_request"):
        raise Refused(f"scope {region}/{service}/{terminator}")
    if day != params["X-Amz-Date"][:8]:
        raise Refused("credential scope date differs from X-Amz-Date")
    age = now - signed_at.timestamp()
    if age < -CLOCK_SKEW:
        raise Refused(f"dated {-age:.1f} s in the future")
    if not 0 < expires_in <= 900 or age > min(expires_in, state["token_lifetime"]):
        raise Refused(f"expired: {age:.1f} s old")
    credentials = state["credentials"].get(key_id)
    if credentials is None:
        raise Refused(f"unknown access key {key_id}")
    if credentials["expires"] <= now:
        raise Refused(f"the credentials of {key_id} expired {now - credentials['expires']:.1f} s ago")
    if params.get("X-Amz-Security-Token") != credentials["session_token"]:
        raise Refused(f"wrong or missing session token for {key_id}")

    canonical_query = "&".join(
        f"{_encode(name)}={_encode(value)}" for name, value in sorted(params.items()) if name != "X-Amz-Signature"
    )
    canonical_request = "\n".join(["GET", "/", canonical_query, f"host:{endpoint}", "", "host", EMPTY_PAYLOAD_SHA256])
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = ("AWS4" + credentials["secret"]).encode()
    for part in (day, region, service, "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise Refused("signature mismatch")
    return key_id


def main(argv: list[str]) -> int:
    """pam_exec's entry point: argv[1] is the state file. One line on standard output per decision."""
    state = json.loads(Path(argv[1]).read_text())
    user = os.environ.get("PAM_USER", "")
    token = sys.stdin.buffer.read().split(b"\0", 1)[0].decode(errors="replace")
    try:
        key_id = verify(token, user, state, time.time())
    except Refused as refusal:
        print(f"refuse user={user} length={len(token)}: {refusal}", flush=True)
        return 1
    print(f"accept user={user} length={len(token)} key={key_id}", flush=True)
    return 0


# --- the test side -----------------------------------------------------------------------------------


def decisions(log: Path) -> list[dict[str, str]]:
    """The validator's decisions in order: {"decision": accept|refuse, "user": ..., "key": ...|"reason": ...}."""
    found = []
    for line in log.read_text().splitlines() if log.exists() else []:
        decision, _, rest = line.partition(" ")
        if decision not in {"accept", "refuse"}:
            continue  # pam_exec's "*** <date>" lines, or a traceback
        head, _, reason = rest.partition(": ")
        fields = dict(field.split("=", 1) for field in head.split())
        found.append({"decision": decision, **fields, **({"reason": reason} if reason else {})})
    return found


class PodIdentityAgent:
    """The EKS Pod Identity agent's credentials endpoint on loopback, issuing new credentials every
    `every` seconds, each valid `lifetime` seconds; what is valid is written to state_file for the
    validator. env() is what EKS injects into a pod (plus settings that keep botocore from finding
    credentials anywhere else on this machine)."""

    def __init__(self, directory: Path, *, endpoint: str, region: str, every: float, lifetime: float):
        self.directory = directory
        self.state_file = directory / "rds-iam-state.json"
        self.endpoint, self.region, self.every, self.lifetime = endpoint, region, every, lifetime
        self.credentials: dict[str, dict[str, Any]] = {}  # everything issued, by access key id
        self.authorization = secrets.token_urlsafe(32)
        self.token_file = directory / "eks-pod-identity-token"
        self.token_file.write_text(self.authorization)
        self.served = 0  # credential requests answered
        self._current: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._rotate_until_stopped, daemon=True),
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1/credentials"

    def env(self) -> dict[str, str]:
        nowhere = str(self.directory / "no-such-aws-file")
        return {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(self.token_file),
            "AWS_ACCESS_KEY_ID": "",  # empty: botocore's environment provider passes
            "AWS_SECRET_ACCESS_KEY": "",
            "AWS_SESSION_TOKEN": "",
            "AWS_SHARED_CREDENTIALS_FILE": nowhere,
            "AWS_CONFIG_FILE": nowhere,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    @property
    def issued(self) -> list[str]:
        return list(self.credentials)

    def __enter__(self) -> "PodIdentityAgent":
        self.rotate()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)

    def rotate(self) -> None:
        """Issue new credentials; earlier ones stay valid until their own expiry, as STS's do."""
        key_id = "ASIA" + secrets.token_hex(8).upper()
        secret = secrets.token_urlsafe(30)
        session_token = secrets.token_urlsafe(24)  # short: see the module's docstring
        expires = time.time() + self.lifetime
        state = {"endpoint": self.endpoint, "region": self.region, "token_lifetime": self.lifetime}
        with self._lock:
            self.credentials[key_id] = {"secret": secret, "session_token": session_token, "expires": expires}
            self._current = {
                "AccessKeyId": key_id,
                "SecretAccessKey": secret,
                "Token": session_token,
                "AccountId": "123456789012",
                "Expiration": datetime.datetime.fromtimestamp(expires, datetime.UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
            }
            staged = self.state_file.with_suffix(".new")
            staged.write_text(json.dumps({**state, "credentials": self.credentials}))
            staged.chmod(0o644)
            staged.replace(self.state_file)  # the validator never reads half a file

    def _rotate_until_stopped(self) -> None:
        while not self._stopping.wait(self.every):
            self.rotate()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        agent = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.headers.get("Authorization") != agent.authorization:
                    status, body = 401, b'{"Message": "invalid service account token"}'
                elif self.path != "/v1/credentials":
                    status, body = 404, b'{"Message": "not found"}'
                else:
                    with agent._lock:
                        status, body = 200, json.dumps(agent._current).encode()
                        agent.served += 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def system_python(as_postgres: bool) -> str | None:
    """A Python (3.11 or later) that PostgreSQL's user can run (the test's own may live under /root)."""
    candidates = ["/usr/bin/python3", shutil.which("python3"), os.path.realpath(sys.executable)]
    for python in dict.fromkeys(filter(None, candidates)):
        check = [python, "-I", "-c", "import sys; sys.exit(sys.version_info < (3, 11))"]  # as this file needs
        command = ["runuser", "-u", "postgres", "--", *check] if as_postgres else check
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run(command, capture_output=True, timeout=30).returncode == 0:
                return python
    return None


def pam_unavailable(pg_config: Path) -> str | None:
    """Why PostgreSQL cannot authenticate through a PAM service of this test here, or None."""
    if os.geteuid() != 0:
        return f"installing a PAM service means writing {PAM_DIRECTORY}: needs root"
    configure = subprocess.run([str(pg_config), "--configure"], capture_output=True, text=True).stdout
    if "--with-pam" not in configure:
        return f"{pg_config} is built without PAM"
    patterns = ("/lib/*/security/pam_exec.so", "/usr/lib/*/security/pam_exec.so", "/lib*/security/pam_exec.so")
    if not any(Path("/").glob(pattern.lstrip("/")) for pattern in patterns):
        return "pam_exec.so is not installed (Debian: libpam-modules)"
    return None


@contextlib.contextmanager
def pam_service(directory: Path, python: str) -> Iterator[tuple[str, Path]]:
    """A PAM service running the validator on this directory's state file; yields (service name, log).

    The service file is the only thing installed outside the test's directories: it is removed
    when the block ends, whatever happens in it (only a killed test run leaves one behind:
    /etc/pam.d/titanic-test-rds-iam-*, safe to delete)."""
    validator = directory / "rds_iam_validator.py"
    shutil.copyfile(__file__, validator)
    validator.chmod(0o644)
    log = directory / "rds-iam-validator.log"
    name = f"titanic-test-rds-iam-{uuid.uuid4().hex[:12]}"
    service = PAM_DIRECTORY / name
    service.write_text(
        f"# Installed by the Titanic API's tests (tests/harness/rds_iam.py) for one test run.\n"
        f"auth required pam_exec.so expose_authtok quiet log={log} {python} -I {validator} "
        f"{directory / 'rds-iam-state.json'}\n"
        "account required pam_permit.so\n"
    )
    try:
        yield name, log
    finally:
        service.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
