"""The local web app: a FastAPI application over skysift's library.

``create_app(data_dir)`` builds the app; ``serve()`` runs it with uvicorn
(``skysift serve``). The API (JSON unless said otherwise):

======  =====================================  =====================================================
method  path                                   what
======  =====================================  =====================================================
GET     /                                      the single-page app (static HTML, CSS, JS)
GET     /api/info                              version, upload limit, accepted file types
GET     /api/samples                           bundled samples (and why one is unavailable)
POST    /api/uploads?filename=NAME             upload one file (the raw request body); 413/415/400
GET     /api/uploads                           uploaded files, newest first
GET     /api/uploads/{id}                      one upload (kind, shape, site, time from metadata)
DELETE  /api/uploads/{id}                      delete an upload (409 while a queued or running job uses it)
POST    /api/jobs                              start a job (calibrate, bolide, streaks, dso)
GET     /api/jobs                              every job with state, stage and progress
GET     /api/jobs/{id}                         one job (poll it for progress)
DELETE  /api/jobs/{id}                         delete a finished job and its folder
GET     /api/jobs/{id}/files/{path}            a file of the job's folder (``?download=1``); ``error.log``
                                               is served as the one-line error, without the traceback
GET     /api/jobs/{id}/calibration             frame, fit numbers, identified stars, pairs
GET     /api/jobs/{id}/stars                   detections, for snapping clicks
GET     /api/jobs/{id}/catalog?max_mag=3.5     catalogue stars above the horizon (alt, az, x, y)
POST    /api/jobs/{id}/manual-fit              fit clicked pairs; saved as the job's calibration
GET     /api/jobs/{id}/lightcurve              a bolide's light curve and overlay frames
GET     /api/jobs/{id}/streaks                 per image: score, streaks, mask and display image
GET     /api/jobs/{id}/dso                     deep-sky objects: ellipses, verdicts, PNGs
======  =====================================  =====================================================

Errors are ``{"detail": "one line"}`` with a 4xx status (5xx for a bug);
tracebacks go to the server log and a job's ``error.log`` on the server only
(over HTTP ``error.log`` holds the one-line error, without server paths).

Security: the server binds to 127.0.0.1 unless told otherwise; requests
whose ``Host`` is not one of the server's names (the loopback names, the bound
address and those allowed explicitly, see :func:`allowed_hosts_for`) are
refused (DNS rebinding),
and so are state-changing requests from another web origin; uploads are
limited in size and type; every path comes from a checked identifier and
is resolved inside the data folder.
"""

import contextlib
import ipaddress
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from skysift import __version__
from skysift.errors import CalibrationError, InputError, SkysiftError
from skysift.io.frame import Site
from skysift.io.metadata import parse_time
from skysift.streaks import pipeline as streaks
from skysift.web.jobs import ACTIVE_STATES, JobStore, Worker, failure_report, user_message
from skysift.web.storage import (
    ACCEPTED,
    ConflictError,
    NotFoundError,
    UploadError,
    UploadStore,
    safe_child,
)

__all__ = [
    "create_app",
    "serve",
    "allowed_hosts_for",
    "default_data_dir",
    "DEFAULT_MAX_UPLOAD_MB",
]

log = logging.getLogger("skysift.web")

#: Default upload limit, in megabytes.
DEFAULT_MAX_UPLOAD_MB = 500.0
_MAX_JSON_BYTES = 1_000_000
_MAX_IMAGES = 500
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
#: Addresses that bind every interface; as an allowed host: any IP-address ``Host``.
_ANY_ADDRESS = ("0.0.0.0", "::", "[::]")


def allowed_hosts_for(host: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The ``Host`` names a server bound to ``host`` answers to.

    The loopback names, ``host`` itself (an IPv6 address also in brackets) and
    ``extra``. A server bound to every interface (``0.0.0.0``, ``::``) also
    answers to a ``Host`` that is an IP address (DNS rebinding needs a name
    the attacker controls, never an address); other names must be given in
    ``extra``. ``"*"`` (any name, turning the DNS-rebinding check off) is
    allowed only when ``extra`` holds it.

    Parameters
    ----------
    host : str
        The address or name the server binds.
    extra : list of str, optional
        More host names (``--allow-host``), e.g. the computer's name on the
        network.

    Returns
    -------
    list of str
        Lowercase names, without duplicates, in a stable order.
    """
    names = [*_LOCAL_HOSTS, host, *extra]
    if ":" in host and not host.startswith("["):
        names.append(f"[{host}]")
    out: list[str] = []
    for n in names:
        n = n.strip().lower()
        if n and n not in out:
            out.append(n)
    return out


def _host_allowed(name: str, hosts: set[str]) -> bool:
    """Is the ``Host`` name (port removed) one the server answers to?"""
    if "*" in hosts or name in hosts:
        return True
    if hosts.isdisjoint(_ANY_ADDRESS):
        return False
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _streak_methods() -> tuple[tuple[str, ...], str]:
    """The streak finders of :mod:`skysift.streaks.pipeline` and its default."""

    methods = tuple(streaks.STREAK_METHODS)
    return methods, getattr(streaks, "DEFAULT_METHOD", methods[0])


def default_data_dir() -> Path:
    """``$SKYSIFT_WEB_DATA``, else ``$XDG_DATA_HOME/skysift/web`` (``~/.local/share/skysift/web``)."""
    env = os.environ.get("SKYSIFT_WEB_DATA")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "skysift" / "web"


def _static_dir() -> Path:
    return Path(str(resources.files("skysift.web") / "static"))


def create_app(
    data_dir: str | os.PathLike[str],
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    allowed_hosts: list[str] | None = None,
    start_worker: bool = True,
):  # noqa: ANN201 - fastapi.FastAPI, imported lazily (the web extra is optional)
    """Build the web app over a data folder.

    Parameters
    ----------
    data_dir : path
        Folder of uploads and jobs (created); nothing outside it is read or
        written, except the bundled samples.
    max_upload_mb : float, optional
        Largest accepted upload, in megabytes (10**6 bytes). Default 500.
    allowed_hosts : list of str, optional
        Host names the server answers to (``Host`` header). Default: the
        loopback names (``127.0.0.1``, ``localhost``, ``[::1]``); ``"*"``
        accepts any name, and ``"0.0.0.0"`` or ``"::"`` any IP address (see
        :func:`allowed_hosts_for`).
    start_worker : bool, optional
        Run queued jobs in a background thread while the app runs. Default True.

    Returns
    -------
    fastapi.FastAPI

    Raises
    ------
    InputError
        If the web extra is not installed or ``max_upload_mb`` is not positive.
    """
    try:
        # the optional web extra: imported on use
        from fastapi import FastAPI, Query, Request

        # the optional web extra: imported on use
        from fastapi.exceptions import RequestValidationError

        # the optional web extra: imported on use
        from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response

        # the optional web extra: imported on use
        from fastapi.staticfiles import StaticFiles
        from pydantic import BaseModel, Field  # comes with fastapi (the web extra)
    except ImportError as err:
        msg = f"the web app needs the web extra: pip install 'skysift[web]' ({err})"
        raise InputError(msg) from err
    if not max_upload_mb > 0:
        msg = f"max_upload_mb must be positive, got {max_upload_mb!r}"
        raise InputError(msg)

    # the web extra (fastapi): imported on use
    from skysift.web import views

    # the web extra (fastapi): imported on use
    from skysift.web.runners import RUNNERS, SAMPLES, _bundled_frame, sample_status

    root = Path(data_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    store = JobStore(root / "jobs")
    uploads = UploadStore(root / "uploads", int(max_upload_mb * 1e6))
    worker = Worker(store, RUNNERS)
    hosts = {h.lower() for h in (allowed_hosts or _LOCAL_HOSTS)}

    @contextlib.asynccontextmanager
    async def lifespan(_app):  # noqa: ANN001, ANN202
        if start_worker:
            worker.start()
        yield
        worker.stop()

    app = FastAPI(title="skysift", version=__version__, lifespan=lifespan, docs_url=None)
    app.state.store, app.state.uploads, app.state.worker = store, uploads, worker
    app.state.data_dir = root

    # -- errors: one line for the user, never a traceback ------------------
    def _error(status: int, detail: str) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(NotFoundError)
    async def _not_found(_req: Request, err: NotFoundError) -> JSONResponse:
        return _error(404, str(err))

    @app.exception_handler(ConflictError)
    async def _conflict(_req: Request, err: ConflictError) -> JSONResponse:
        return _error(409, str(err))

    @app.exception_handler(UploadError)
    async def _upload(_req: Request, err: UploadError) -> JSONResponse:
        return _error(err.status, str(err))

    @app.exception_handler(SkysiftError)
    async def _skysift(_req: Request, err: SkysiftError) -> JSONResponse:
        return _error(422 if isinstance(err, CalibrationError) else 400, user_message(err))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, err: RequestValidationError) -> JSONResponse:
        parts = []
        for e in err.errors()[:3]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", ""))
        return _error(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(Exception)
    async def _bug(_req: Request, err: Exception) -> JSONResponse:
        log.exception("internal error")
        return _error(500, f"internal error: {user_message(err)} (details in the server log)")

    # -- host and origin checks -------------------------------------------
    @app.middleware("http")
    async def _guard(request: Request, call_next):  # noqa: ANN001, ANN202
        host = (request.headers.get("host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if not _host_allowed(name, hosts):
            return _error(400, f"unknown host {host!r}: this server answers to {sorted(hosts)}")
        if request.method in ("POST", "PUT", "DELETE", "PATCH"):
            origin = request.headers.get("origin")
            # "null" is what sandboxed frames and file:// pages send: another origin too
            if origin and (origin == "null" or urlsplit(origin).netloc.lower() != host):
                return _error(403, "cross-origin request refused")
            size = request.headers.get("content-length")
            if (
                request.url.path != "/api/uploads"
                and size is not None
                and size.isdigit()
                and int(size) > _MAX_JSON_BYTES
            ):
                return _error(413, "request too large")
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    # -- pages and static files -------------------------------------------
    static = _static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", headers={"Cache-Control": "no-store"})

    # -- info, samples, uploads ---------------------------------------------
    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {
            "version": __version__,
            "max_upload_mb": max_upload_mb,
            "accepted": sorted(ACCEPTED),
            "kinds": sorted(RUNNERS),
            "streak_methods": list(_streak_methods()[0]),
            "streak_method_default": _streak_methods()[1],
        }

    @app.get("/api/samples")
    def samples() -> list[dict[str, Any]]:
        return sample_status()

    @app.post("/api/uploads", status_code=201)
    async def upload(request: Request, filename: str = Query(..., max_length=255)) -> dict:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > uploads.max_bytes:
            msg = f"{filename}: too big: more than {uploads.max_bytes / 1e6:.0f} MB"
            raise UploadError(msg, 413)
        return await uploads.save(filename, request.stream())

    @app.get("/api/uploads")
    def list_uploads() -> list[dict[str, Any]]:
        return uploads.list()

    @app.get("/api/uploads/{upload_id}")
    def get_upload(upload_id: str) -> dict[str, Any]:
        return uploads.get(upload_id)

    @app.delete("/api/uploads/{upload_id}")
    def delete_upload(upload_id: str) -> dict[str, Any]:
        path = str(uploads.path(upload_id))
        for job in store.list():
            if job["state"] not in ACTIVE_STATES:
                continue
            p = job.get("params") or {}
            used = [p.get(k) for k in ("image", "video", "calibration")] + list(
                p.get("images") or []
            )
            if path in used:
                msg = (
                    f"{uploads.get(upload_id)['name']} is used by job {job['id']}, which is "
                    f"{job['state']}; delete the upload once the job has finished"
                )
                raise ConflictError(msg)
        uploads.delete(upload_id)
        return {"deleted": upload_id}

    # -- jobs -------------------------------------------------------------
    class SiteIn(BaseModel):
        lat: float
        lon: float
        height: float = 0.0

    class JobIn(BaseModel):
        kind: Literal["calibrate", "bolide", "streaks", "dso"]
        sample: str | None = None
        image: str | None = Field(None, description="upload id of the frame to calibrate")
        video: str | None = Field(None, description="upload id of the video or FITS cube")
        calibration: str | None = Field(None, description="upload id of a calibration frame")
        images: list[str] = Field(default_factory=list, max_length=_MAX_IMAGES)
        site: SiteIn | None = None
        time: str | None = Field(None, max_length=64)
        mode: Literal["auto", "allsky", "narrow", "manual"] = "auto"
        fov: float | None = Field(None, gt=0, le=360)
        fps: float | None = Field(None, gt=0, le=10000)
        method: str | None = Field(None, max_length=32, description="streak finder")
        ra: float | None = Field(None, ge=0, lt=360, description="dso: centre hint, deg")
        dec: float | None = Field(None, ge=-90, le=90, description="dso: centre hint, deg")

    def _upload_of(uid: str | None, what: str, kind: str | None = None) -> tuple[str, str]:
        if not uid:
            msg = f"choose a {what}: a bundled sample or an uploaded file"
            raise InputError(msg)
        rec = uploads.get(uid)
        if kind is not None and rec["kind"] != kind:
            msg = f"{rec['name']} is a{'n' if rec['kind'] == 'image' else ''} {rec['kind']}, not a{'n' if kind == 'image' else ''} {kind}"
            raise InputError(msg)
        return str(uploads.path(uid)), rec["name"]

    def _public(job: dict[str, Any]) -> dict[str, Any]:
        """A job record without the server's file paths."""
        out = dict(job)
        p = dict(job.get("params") or {})
        for key in ("image", "video", "calibration", "images"):
            p.pop(key, None)
        out["params"] = p
        return out

    @app.post("/api/jobs", status_code=201)
    def create_job(req: JobIn) -> dict[str, Any]:

        params: dict[str, Any] = {
            "site": Site(req.site.lat, req.site.lon, req.site.height).to_dict()
            if req.site
            else None,
            "time": parse_time(req.time).isot if req.time else None,
            "sample": req.sample,
        }
        if req.sample is not None:
            if req.sample not in SAMPLES:
                msg = f"no bundled sample {req.sample!r}; available: {', '.join(SAMPLES)}"
                raise InputError(msg)
            if SAMPLES[req.sample]["kind"] != req.kind:
                msg = f"sample {req.sample!r} is for {SAMPLES[req.sample]['kind']} jobs, not {req.kind}"
                raise InputError(msg)
            status = next(s for s in sample_status() if s["name"] == req.sample)
            if not status["available"]:
                raise InputError(status["reason"])
        names: list[str] = []
        if req.kind == "calibrate":
            if req.sample == "magic-allsky":
                frame = _bundled_frame()
                params["image"] = frame["image"]
                params["site"] = params["site"] or frame["site"]
                names = [Path(frame["image"]).name]
            else:
                params["image"], name = _upload_of(req.image, "frame to calibrate", "image")
                names = [name]
            params.update(mode=req.mode, fov=req.fov)
        elif req.kind == "bolide":
            if req.sample is None:
                params["video"], name = _upload_of(req.video, "video", "video")
                names = [name]
                if req.calibration:
                    params["calibration"], cname = _upload_of(
                        req.calibration, "calibration frame", "image"
                    )
                    names.append(cname)
            else:
                names = [req.sample]
            params["fps"] = req.fps
        elif req.kind == "dso":
            if (req.ra is None) != (req.dec is None):
                msg = "give both ra and dec of the centre hint, or neither"
                raise InputError(msg)
            params["image"], name = _upload_of(req.image, "frame", "image")
            names = [name]
            params.update(fov=req.fov, ra=req.ra, dec=req.dec)
        else:
            methods, _ = _streak_methods()
            if req.method is not None and req.method not in methods:
                msg = f"streak method must be one of {list(methods)}, got {req.method!r}"
                raise InputError(msg)
            params["method"] = req.method
            if req.sample is None:
                if not req.images:
                    msg = "choose the images to search for streaks (upload them first)"
                    raise InputError(msg)
                files = [_upload_of(u, "image", "image") for u in req.images]
                params["images"] = [f for f, _ in files]
                names = [n for _, n in files]
            else:
                names = [req.sample]
        params["input_names"] = names
        shown = names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        job = store.create(req.kind, f"{req.kind}: {shown}", params)
        worker.submit(job["id"])
        return _public(job)

    @app.get("/api/jobs")
    def list_jobs() -> list[dict[str, Any]]:
        return [_public(j) for j in store.list()]

    @app.get("/api/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return _public(store.get(job_id))

    @app.delete("/api/jobs/{job_id}")
    def delete_job(job_id: str) -> dict[str, Any]:
        store.delete(job_id)
        return {"deleted": job_id}

    @app.get("/api/jobs/{job_id}/files/{path:path}")
    def job_file(job_id: str, path: str, download: bool = False) -> Response:
        folder = store.folder(job_id)
        target = safe_child(folder, path)
        if not target.is_file() or target.name == "job.json":
            msg = f"no such file: {path!r}"
            raise NotFoundError(msg)
        if target == safe_child(folder, "error.log"):
            # the traceback names server paths: it stays in the server log and folder
            text = failure_report(store.get(job_id), root)
            disposition = {"Content-Disposition": 'attachment; filename="error.log"'}
            return PlainTextResponse(
                text,
                headers={"Cache-Control": "no-cache", **(disposition if download else {})},
            )
        headers = {"Cache-Control": "no-cache"}
        if download:
            return FileResponse(target, filename=target.name, headers=headers)
        return FileResponse(target, headers=headers)

    def _kind(job_id: str, kind: str) -> tuple[dict[str, Any], Path]:
        job = store.get(job_id)
        if job["kind"] != kind:
            msg = f"job {job_id} is a {job['kind']} job, not a {kind} job"
            raise InputError(msg)
        return job, store.folder(job_id)

    @app.get("/api/jobs/{job_id}/calibration")
    def calibration(job_id: str) -> dict[str, Any]:
        return views.calibration_view(_kind(job_id, "calibrate")[1])

    @app.get("/api/jobs/{job_id}/stars")
    def stars(job_id: str) -> list[dict[str, Any]]:
        return views.stars_view(_kind(job_id, "calibrate")[1])

    @app.get("/api/jobs/{job_id}/catalog")
    def catalog(job_id: str, max_mag: float = Query(3.5, ge=-2, le=6.5)) -> dict[str, Any]:
        return views.catalog_view(_kind(job_id, "calibrate")[1], max_mag=max_mag)

    class PairsIn(BaseModel):
        pairs: list[dict[str, Any]] = Field(..., max_length=1000)

    @app.post("/api/jobs/{job_id}/manual-fit")
    def manual_fit(job_id: str, req: PairsIn) -> dict:
        job, folder = _kind(job_id, "calibrate")
        if job["state"] in ("queued", "running"):
            msg = "the job is still running; calibrate by hand once it has finished"
            raise InputError(msg)
        if not (folder / "frame.json").is_file():
            msg = "this job's frame could not be read; start a new job"
            raise InputError(msg)
        fit = views.fit_manual(job, folder, req.pairs)
        result = dict(job.get("result") or {"frame": "frame.png"})
        result["calibration"] = fit["calibration"]
        store.update(job_id, result=result)
        return fit

    @app.get("/api/jobs/{job_id}/lightcurve")
    def lightcurve(job_id: str) -> dict[str, Any]:
        return views.lightcurve_view(_kind(job_id, "bolide")[1])

    @app.get("/api/jobs/{job_id}/streaks")
    def streak_results(job_id: str) -> list[dict[str, Any]]:
        return views.streaks_view(_kind(job_id, "streaks")[1])

    @app.get("/api/jobs/{job_id}/dso")
    def dso_results(job_id: str) -> dict[str, Any]:
        # the web extra's DSO page: imported on use, like views
        from skysift.web.dso import dso_view

        job, folder = _kind(job_id, "dso")
        return dso_view(job, folder)

    return app


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    allowed_hosts: list[str] | tuple[str, ...] = (),
    echo=print,  # noqa: ANN001
) -> None:
    """Run the web app with uvicorn until interrupted (``skysift serve``).

    Parameters
    ----------
    host : str, optional
        Address to bind. Default ``127.0.0.1`` (this computer only); any other
        address lets other computers use the app, which is said on start.
    port : int, optional
        Default 8000.
    data_dir : path, optional
        Folder of uploads and jobs. Default :func:`default_data_dir`.
    max_upload_mb : float, optional
        Upload limit in megabytes. Default 500.
    allowed_hosts : list of str, optional
        More ``Host`` names to answer to besides the loopback names and
        ``host`` (see :func:`allowed_hosts_for`); ``"*"`` turns the
        DNS-rebinding check off and is never implied.
    echo : callable, optional
        Where the start-up lines go. Default ``print``.

    Raises
    ------
    InputError
        If the web extra (uvicorn) is missing.
    """
    try:
        # the optional web extra: imported on use
        import uvicorn
    except ImportError as err:
        msg = f"the web app needs the web extra: pip install 'skysift[web]' ({err})"
        raise InputError(msg) from err
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    local = host in _LOCAL_HOSTS
    allowed = allowed_hosts_for(host, list(allowed_hosts))
    app = create_app(folder, max_upload_mb=max_upload_mb, allowed_hosts=allowed)
    shown = f"[{host}]" if ":" in host else host
    echo(f"skysift web app: http://{shown}:{port}/  (data in {app.state.data_dir})")
    if local:
        echo("listening on localhost only: other computers cannot reach it")
    else:
        echo(
            f"WARNING: listening on {host}: anyone who can reach this address can use the app "
            "and read its results (there is no login)"
        )
    if not local:
        names = [h for h in allowed if h not in _ANY_ADDRESS]
        if len(names) < len(allowed):
            names.append("any IP address")
        echo(f"answering to Host: {', '.join(names)}")
    echo("press Ctrl+C to stop")
    uvicorn.run(app, host=host, port=port, log_level="warning")
