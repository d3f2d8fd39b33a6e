"""Hostile HTTP requests to a real ``gate serve``: each gets one 4xx naming the problem, fast, no traceback.

One server (uvicorn subprocess, SQLite, real socket) serves every case. Each case
sends real bytes over HTTP (bodies, headers, archives built here) and asserts
the status code, the text of the error, that the answer came within the
corpus's time bound, and that the server's log gained no traceback.
"""

from __future__ import annotations

import io
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gate.service.guards import COOKIE
from gate.service.settings import ArchiveLimits
from tests.fixtures.service import ServiceFactory, ServiceProcess, write_run_dir
from tests.hostile._harness import SECONDS

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Target:
    svc: ServiceProcess
    run: Path
    release_id: int


@pytest.fixture(scope="module")
def target(module_services: ServiceFactory, tmp_path_factory: pytest.TempPathFactory) -> Target:
    root = tmp_path_factory.mktemp("hostile-service")
    runs = root / "runs"
    run = write_run_dir(runs)
    limits = ArchiveLimits(max_upload_bytes=2 << 20, max_total_bytes=16 << 20, max_files=50, max_ratio=50)
    svc = module_services(
        database_url=f"sqlite:///{root / 'gate.db'}", allowed_roots=(runs,), archive=limits
    ).start()
    with svc.client("submit") as c:
        r = c.post(
            "/api/releases",
            json={"name": "target", "version": "1.0.0", "run": str(run), "contract": "smollm2-vllm"},
        )
        assert r.status_code == 201, r.text
    return Target(svc, run, r.json()["id"])


def _tar(members: dict[str, bytes], *, symlink: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink[0])
            info.type, info.linkname = tarfile.SYMTYPE, symlink[1]
            tf.addfile(info)
    return buf.getvalue()


def _zip(members: dict[str, bytes], *, link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _upload(version: str, body: bytes) -> Callable[[Target, httpx.Client], httpx.Response]:
    def send(t: Target, c: httpx.Client) -> httpx.Response:
        return c.post(
            "/api/releases/upload",
            params={"name": "hostile", "version": version, "contract": "smollm2-vllm"},
            content=body,
        )

    return send


def _post_json(body: bytes) -> Callable[[Target, httpx.Client], httpx.Response]:
    return lambda t, c: c.post("/api/releases", content=body, headers=JSON)


def _events(last_id: str | bytes) -> Callable[[Target, httpx.Client], httpx.Response]:
    def send(t: Target, c: httpx.Client) -> httpx.Response:
        url = f"/api/releases/{t.release_id}/events"
        return c.get(url, params={"follow": "false"}, headers={"last-event-id": last_id})

    return send


def _with_auth(header: str) -> Callable[[Target, httpx.Client], httpx.Response]:
    return lambda t, c: c.get("/api/releases", headers={"authorization": header})


def _cookie_write(t: Target, c: httpx.Client) -> httpx.Response:
    # A logged-in browser tricked by another site: the cookie rides along, the CSRF token cannot.
    cookies = {COOKIE: t.svc.token("approve")}
    with httpx.Client(base_url=t.svc.url, cookies=cookies, timeout=SECONDS) as browser:
        return browser.post(f"/api/releases/{t.release_id}/approve")


def _form_without_csrf(t: Target, c: httpx.Client) -> httpx.Response:
    cookies = {COOKIE: t.svc.token("approve")}
    with httpx.Client(base_url=t.svc.url, cookies=cookies, timeout=SECONDS) as browser:
        return browser.post(f"/releases/{t.release_id}/approve", data={"csrf": "forged"})


def _bad_multipart(t: Target, c: httpx.Client) -> httpx.Response:
    body = b'--XYZ\r\nContent-Disposition: form-data; name="token"\r\n\r\n' + b"A" * 100
    headers = {"content-type": "multipart/form-data; boundary=XYZ"}
    return httpx.post(f"{t.svc.url}/login", content=body, headers=headers, timeout=SECONDS)


def _open_redirect(t: Target, c: httpx.Client) -> httpx.Response:
    # A valid login may only go to a path on this server, never to another host.
    form = {"token": t.svc.token("read"), "next": "//evil.example/phish"}
    r = httpx.post(f"{t.svc.url}/login", data=form, timeout=SECONDS)
    assert r.headers["location"] == "/", r.headers
    return r


def _deep_json() -> bytes:
    return b"[" * 200_000 + b"]" * 200_000


def _run_ref(run: str) -> Callable[[Target, httpx.Client], httpx.Response]:
    return lambda t, c: c.post(
        "/api/releases", json={"name": "hostile", "version": "2.0.0", "run": run, "contract": "smollm2-vllm"}
    )


# (id, request, expected status, text the error must contain)
CASES: list[tuple[str, Callable[[Target, httpx.Client], httpx.Response], int, str]] = [
    ("deeply-nested-json", _post_json(_deep_json()), 400, "deeper than 64 levels"),
    (
        "deeply-nested-objects",
        _post_json(b'{"a":' * 100 + b"1" + b"}" * 100),
        400,
        "deeper than 64",
    ),
    (
        "duplicate-keys",
        _post_json(b'{"name":"a","name":"b","version":"1","run":"/x"}'),
        400,
        "key 'name' twice",
    ),
    (
        "huge-integer",
        _post_json(b'{"name":"a","version":' + b"9" * 100_000 + b',"run":"/x"}'),
        400,
        "100000 digits",
    ),
    ("nan-literal", _post_json(b'{"name":"a","version":NaN,"run":"/x"}'), 400, "NaN, which is not JSON"),
    ("huge-float", _post_json(b'{"name":"a","version":1e999999,"run":"/x"}'), 400, "number out of range"),
    ("not-utf8", _post_json(b'{"name":"\xff\xfe"}'), 400, "not UTF-8"),
    ("unknown-field", _post_json(b'{"name":"a","version":"1","run":"/x","evil":1}'), 400, "evil"),
    ("oversize-json-body", _post_json(b'{"name":"' + b"a" * (11 << 20) + b'"}'), 413, ""),
    ("over-long-last-event-id", _events("9" * 5000), 400, "not an event id"),
    ("negative-last-event-id", _events("-1"), 400, "not an event id"),
    ("non-ascii-digits-last-event-id", _events("١٢٣".encode()), 400, "not an event id"),
    ("upload-over-the-limit", _upload("1.0.1", b"\x1f\x8b" + bytes(3 << 20)), 413, "over the limit"),
    (
        "zip-bomb",
        _upload("1.0.2", _zip({"run.json": b"{}", "zeros": bytes(12 << 20)})),
        400,
        "decompression bomb",
    ),
    (
        "zip-slip",
        _upload("1.0.3", _zip({"run.json": b"{}", "../../escape.txt": b"x"})),
        400,
        "path traversal refused",
    ),
    ("zip-absolute-path", _upload("1.0.4", _zip({"/etc/cron.d/x": b"x"})), 400, "absolute path"),
    ("zip-symlink-entry", _upload("1.0.5", _zip({"run.json": b"{}"}, link="adapter")), 400, "symbolic link"),
    (
        "tar-symlink-entry",
        _upload("1.0.6", _tar({"run.json": b"{}"}, symlink=("adapter", "/etc"))),
        400,
        "links are refused",
    ),
    ("tar-slip", _upload("1.0.7", _tar({"run.json": b"{}", "../x": b"x"})), 400, "path traversal refused"),
    (
        "garbage-archive",
        _upload("1.0.8", b"this is not an archive at all" * 10),
        400,
        "not a readable tar archive",
    ),
    ("archive-without-a-run", _upload("1.0.9", _zip({"README": b"hi"})), 400, "no training run"),
    ("version-with-path", _upload("..%2F..%2Fx", b"x"), 400, "not a valid OCI tag"),
    (
        "contract-id-traversal",
        lambda t, c: c.post(
            "/api/releases", json={"name": "a", "version": "1", "run": "/x", "contract": "../../etc/passwd"}
        ),
        400,
        "not a plain name",
    ),
    (
        "submission-without-a-contract",
        lambda t, c: c.post("/api/releases", json={"name": "a", "version": "1", "run": "/x"}),
        400,
        "missing required field `contract`",
    ),
    (
        "upload-without-a-contract",
        lambda t, c: c.post("/api/releases/upload", params={"name": "a", "version": "1"}, content=b"x"),
        400,
        "missing required query parameter 'contract'",
    ),
    ("run-outside-allowed-roots", _run_ref("/etc"), 400, "outside the directories"),
    ("relative-run-reference", _run_ref("../../etc"), 400, "must be an absolute path"),
    ("huge-release-id", lambda t, c: c.get("/api/releases/" + "9" * 40), 404, "no release"),
    (
        "huge-audit-release-id",
        lambda t, c: c.get("/api/audit", params={"release_id": "9" * 40}),
        400,
        "release_id",
    ),
    (
        "unknown-status-filter",
        lambda t, c: c.get("/api/releases", params={"status": "published,pwned"}),
        400,
        "unknown status 'pwned'",
    ),
    (
        "bad-date-filter",
        lambda t, c: c.get("/api/releases", params={"since": "yesterday'--"}),
        400,
        "not an ISO date",
    ),
    ("limit-out-of-range", lambda t, c: c.get("/api/releases", params={"limit": "9" * 50}), 400, "limit"),
    ("basic-auth-scheme", _with_auth("Basic YWRtaW46YWRtaW4="), 401, "malformed Authorization header"),
    ("empty-bearer", _with_auth("Bearer"), 401, "malformed Authorization header"),
    ("huge-token", _with_auth("Bearer " + "A" * 20000), 401, "longer than 16384"),
    ("unknown-token", _with_auth("Bearer gate_" + "x" * 43), 401, "unknown API token"),
    (
        "forged-jwt-without-oidc",
        _with_auth("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.x"),
        401,
        "not accepted",
    ),
    ("cookie-write-without-csrf-header", _cookie_write, 403, "x-csrf-token"),
    ("form-post-with-forged-csrf", _form_without_csrf, 403, "CSRF token is missing or wrong"),
    ("bad-multipart-login", _bad_multipart, 401, "paste an API token"),
    (
        "login-with-a-huge-form",
        lambda t, c: httpx.post(f"{t.svc.url}/login", data={"token": "x" * (11 << 20)}, timeout=SECONDS),
        413,
        "",
    ),
    ("open-redirect-after-login", _open_redirect, 303, ""),
]


@pytest.mark.parametrize(("request_", "status", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_hostile_request_gets_one_clear_4xx_quickly_and_no_traceback(
    target: Target, request_: Callable[[Target, httpx.Client], httpx.Response], status: int, text: str
) -> None:
    log_before = target.svc.log.stat().st_size
    with target.svc.client("submit", timeout=SECONDS) as c:
        started = time.monotonic()
        r = request_(target, c)
        seconds = time.monotonic() - started
    assert r.status_code == status, r.text[:500]
    assert seconds <= SECONDS, f"answered after {seconds:.2f} s"
    if text:
        # The detail, or for a refused parameter Litestar's validation message, names the problem.
        assert text.lower() in r.text.lower(), r.text[:500]
    with target.svc.log.open("rb") as fh:
        fh.seek(log_before)
        grown = fh.read().decode("utf-8", "replace")
    assert "Traceback" not in grown, grown[-3000:]
    assert target.svc.proc is not None and target.svc.proc.poll() is None, "the server died"
