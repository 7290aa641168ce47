"""The probe page's web app: a FastAPI application around one :class:`Prober`.

    from unitscope.models import create_model
    from unitscope.serve import create_app
    app = create_app(create_model("efficientnet_lite0"), run="runs/lite0")
    # uvicorn.run(app, host="127.0.0.1", port=8000)   -- or `unitscope serve runs/lite0`

Routes (the JSON API is documented in the README):
  GET  /                      the page (static HTML + JS + CSS shipped in this package)
  GET  /api/layers            model, default layer, probe-able layers, the run's bases (``LAYER#NAME``)
  GET  /api/labels?layer=L    the run's dissection label of every unit of L
  POST /api/probe?layer=L     multipart field ``image`` -> top classes, units, atlas of maps
  GET  /api/unit?layer=L&unit=K   what the run folder knows about one unit
  GET  /api/samples[/NAME]    sample photos (scikit-image's, when installed)
  GET  /run/...               the run folder's files (exemplar strips, visualisations)
A generator (``ModelInfo.kind == "generator"``) gets the paint page instead (``paint.py``):
  GET  /                      static/paint.html
  GET  /api/paint/info, GET /api/paint/sample?seed=S&layer=L, POST /api/paint

Every ``layer`` parameter also takes a basis of the run (``features.relu5#sae``, ``serve/bases.py``):
its "units" are the basis' directions, their maps the codes of the layer's output.

Errors are JSON ``{"error": message, "status": code}`` (404s add ``"close"``): 400 for an upload
that is not an image, 413 over ``max_upload`` bytes, 404 for an unknown layer or unit.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from torch import nn

from unitscope.models import get_info
from unitscope.serve.probe import Prober, UnknownLayer
from unitscope.serve.runinfo import RunInfo
from unitscope.serve.samples import sample_jpeg, sample_names

MAX_UPLOAD = 10 * 1024 * 1024  # bytes of one image upload
MAX_PIXELS = 40_000_000  # a decoded image larger than this is refused before it is decoded
FORM_SLACK = 64 * 1024  # multipart headers and boundaries on top of the image itself


class ApiError(Exception):
    """An error answered as JSON: ``{"error": message, "status": status, **extra}``."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def create_app(
    model: nn.Module | Prober,
    run: str | Path | None = None,
    *,
    max_upload: int = MAX_UPLOAD,
    model_name: str | None = None,
    segmenter: Any = None,
) -> FastAPI:
    """The app for ``model`` (built once by the caller) and an optional run folder. A generator gets
    the paint page and needs ``segmenter`` (a :class:`unitscope.segment.Segmenter` or its name)."""
    if not isinstance(model, Prober) and get_info(model).kind == "generator":
        return _paint_app(model, run, segmenter)
    prober = model if isinstance(model, Prober) else Prober(model)
    name = model_name or prober.info.name
    info = RunInfo(run, model=name)
    prober.layer_rules.update(info.values_rules())  # the maps the run's thresholds and exemplars were measured on
    from unitscope.serve.bases import run_bases

    prober.bases.update({k: b for k, b in run_bases(info.path).items() if b.layer in prober.layers})
    app = FastAPI(title="unitscope probe", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.prober, app.state.run, app.state.max_upload = prober, info, max_upload
    _add_error_handlers(app)
    _add_api(app, prober, info, name, max_upload)
    static = resources.files("unitscope.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    if info.path is not None:
        app.mount("/run", StaticFiles(directory=str(info.path)), name="run")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    return app


def _paint_app(model: nn.Module, run: str | Path | None, segmenter: Any) -> FastAPI:
    from unitscope.serve.paint import Painter, routes

    if segmenter is None:
        raise ValueError(
            "a generator is served with a segmenter (create_app(generator, segmenter=...)): the "
            "paint page shows what it labels in the generated images"
        )
    name = None
    if isinstance(segmenter, str):  # a registered name or file.py:factory
        from unitscope.segment import create_segmenter

        name, segmenter = segmenter, create_segmenter(segmenter)
    painter = Painter(model, segmenter, run, segmenter_name=name)
    app = FastAPI(title="unitscope paint", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.painter = painter
    _add_error_handlers(app)
    routes(app, painter, ApiError)
    static = resources.files("unitscope.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(static / "paint.html"), media_type="text/html")

    return app


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def bad_params(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()]
        return _error(400, "bad request: " + "; ".join(parts))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error ({type(exc).__name__}: {exc}); the server keeps running")


def _add_api(app: FastAPI, prober: Prober, run: RunInfo, name: str, max_upload: int) -> None:
    def layer_of(layer: str | None):
        try:
            return prober.layer(layer)
        except UnknownLayer as exc:
            raise ApiError(404, str(exc), close=exc.close) from None

    @app.get("/api/layers")
    def layers() -> dict[str, Any]:
        dissected = run.layers()
        return {
            "model": name,
            "default": prober.default_layer,
            "run": str(run.path) if run.path else None,
            "max_upload": max_upload,
            "samples": sample_names(),
            "layers": [{**vars(li), "dissected": li.name in dissected} for li in prober.layers.values()],
            "bases": [{**b.to_json(), "dissected": name in dissected} for name, b in prober.bases.items()],
        }

    @app.get("/api/labels")
    def labels(layer: str | None = None) -> dict[str, Any]:
        target = layer_of(layer)
        return {"layer": target.name, "labels": {str(k): v for k, v in run.labels(target.name).items()}}

    @app.get("/api/unit")
    def unit(unit: str, layer: str | None = None) -> dict[str, Any]:
        target = layer_of(layer)
        k = _unit_index(unit, target.name, target.units)
        return {"model": name, "layer": target.name, "unit": k, **run.unit(target.name, k)}

    @app.get("/api/search")
    def search(q: str = "", layer: str | None = None, limit: int = 50) -> dict[str, Any]:
        """Units whose chosen descriptions match the text ``q`` (words, synonyms, kinds of things)."""
        from unitscope.describe.search import per_layer, search_units

        if not q.strip():
            raise ApiError(400, "empty query: pass ?q=TEXT, e.g. /api/search?q=faces")
        if run.path is None:
            raise ApiError(
                404, "no run folder: start `unitscope serve` with --run RUN (a described run) to search units"
            )
        layers = [layer_of(layer).name] if layer else None
        try:
            hits = search_units(run.path, q, layers=layers, limit=max(1, min(limit, 500)))
        except ValueError as exc:  # the run has no descriptions
            raise ApiError(404, str(exc)) from None
        keep = ("layer", "unit", "description", "formula", "match", "f1", "p_f1")
        return {"query": q, "per_layer": per_layer(hits), "hits": [{k: h[k] for k in keep} for h in hits]}

    def probe_bytes(data: bytes, layer: str) -> dict[str, Any]:
        image = _decode(data)
        body = prober.probe(image, layer).to_json()
        return body | {"image": {"width": image.width, "height": image.height}}

    # Decoding, the forward pass and the PNG atlas run on one worker thread of their own: the
    # event loop stays free for other requests, the model takes one image at a time anyway, and
    # torch keeps a single warm pool of compute threads.
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unitscope-probe")

    @app.post("/api/probe")
    async def probe(request: Request, layer: str | None = None) -> JSONResponse:
        target = layer_of(layer)
        data = await _read_image_field(request, max_upload)
        loop = asyncio.get_running_loop()
        return JSONResponse(await loop.run_in_executor(worker, probe_bytes, data, target.name))

    @app.get("/api/samples")
    def samples() -> dict[str, Any]:
        return {"samples": sample_names()}

    @app.get("/api/samples/{sample}")
    def sample(sample: str) -> Response:
        names = sample_names()
        if sample not in names:
            import difflib

            listed = ", ".join(names) or "none (pip install scikit-image)"
            raise ApiError(
                404, f"no sample photo {sample!r}; samples: {listed}", close=difflib.get_close_matches(sample, names)
            )
        return Response(sample_jpeg(sample), media_type="image/jpeg")


def _unit_index(text: str, layer: str, units: int) -> int:
    try:
        k = int(text)
    except ValueError:
        raise ApiError(400, f"unit must be an integer 0..{units - 1}, got {text!r}") from None
    if not 0 <= k < units:
        close = sorted({min(max(k, 0), units - 1)})
        raise ApiError(
            404, f"layer {layer!r} has {units} units, numbered 0..{units - 1}; there is no unit {k}", close=close
        )
    return k


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(
                413,
                f"upload larger than the limit of {limit - FORM_SLACK:,} bytes; "
                "send a smaller image (or start the server with a larger --max-upload-mb)",
            )
        yield chunk


async def _read_image_field(request: Request, max_upload: int) -> bytes:
    """The bytes of the multipart field ``image`` (or of a raw ``image/*`` body), size-checked
    while they arrive, so an oversized upload is refused without being held in memory."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    too_big = ApiError(
        413,
        f"upload larger than the limit of {max_upload:,} bytes; send a smaller "
        "image (or start the server with a larger --max-upload-mb)",
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_upload + FORM_SLACK:
        raise too_big
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("image/"):
        body = b"".join([c async for c in _limited(request, max_upload + FORM_SLACK)])
    elif ctype.startswith("multipart/form-data"):
        parser = MultiPartParser(
            request.headers, _limited(request, max_upload + FORM_SLACK), max_files=4, max_fields=16
        )
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise ApiError(400, f"could not read the multipart form: {exc.message}") from None
        field = form.get("image")
        if field is None or isinstance(field, str):
            raise ApiError(400, "no file in the multipart field 'image': send the image as -F image=@photo.jpg")
        body = await field.read()
        await form.close()
    else:
        raise ApiError(
            400,
            f"expected a multipart/form-data upload with a field 'image' (or an "
            f"image/* body), got content type {ctype or 'none'!r}",
        )
    if len(body) > max_upload:
        raise too_big
    if not body:
        raise ApiError(400, "the uploaded image is empty (0 bytes)")
    return body


def _decode(data: bytes):
    """An RGB PIL image from uploaded bytes, or a 400 saying why not."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ApiError(413, f"{exc}; downscale the image first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ApiError(
            400,
            f"the upload is not an image PIL can read ({len(data):,} bytes starting "
            f"{data[:8]!r}): send a JPEG, PNG, GIF, BMP or WebP file",
        ) from exc
    if image.width * image.height > MAX_PIXELS:
        raise ApiError(
            413, f"image is {image.width}x{image.height} pixels, more than {MAX_PIXELS:,}; downscale it first"
        )
    try:
        image.load()
        # Upright as the browser shows it (phone photos carry their rotation in EXIF), so the
        # maps line up with the picture on the page.
        return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ApiError(400, f"the {image.format} image could not be decoded ({exc}); is the file truncated?") from exc
