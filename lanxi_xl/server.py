"""xlwings Server for the 兰溪 functions: Excel on Windows, Mac and the web via Office.js.

Staff PCs need no Python: the Office add-in (``addin/manifest.xml``) loads its
functions from this FastAPI app, and Excel shows them under the namespace ``LANXI``
(``=LANXI.CROSSBORDER(B2)``). The Python functions keep their names
(``lanxi_xl.udfs.LANXI_CROSSBORDER``); here they are registered with xlwings under
the short Excel name (``CROSSBORDER``) and the manifest adds the namespace.

Endpoints (the xlwings Server protocol):

* ``GET  /xlwings/custom-functions-meta`` – function metadata (Chinese descriptions);
* ``GET  /xlwings/custom-functions-code`` – the JavaScript that forwards calls here;
* ``POST /xlwings/custom-functions-call`` – one call: ``{"func_name", "args", ...}``
  -> ``{"result": [[...]]}``; bad input in a single cell -> HTTP 400
  ``{"detail": "<中文说明>"}`` (Excel shows ``#VALUE!`` with that text); bad rows in
  a range -> ``#VALUE!`` in those cells and ``"errors": [[row, col, "<说明>"]]``
  so the add-in attaches each message to its cell;
* ``GET /manifest.xml``, ``/taskpane.html``, ``/icons/*.png`` – the add-in itself;
* ``GET /`` – health check naming the policy in force.

xlwings Server features are licensed under the PolyForm Noncommercial License 1.0.0
(``XLWINGS_LICENSE_KEY=noncommercial``), which permits use by government
institutions; commercial use needs an xlwings licence.
"""

from __future__ import annotations

import os

# xlwings reads these when it is first imported: set them before anything imports it.
os.environ.setdefault("XLWINGS_LICENSE_KEY", "noncommercial")
os.environ["XLWINGS_ON_SERVER"] = "true"

import sys  # noqa: E402

# xlwings 0.37.8 checks every cell for Pyodide's JsNull with
# `from pyodide.ffi import JsNull`; on CPython that import fails, and a failed import
# is searched for again on sys.path each time (~30 µs a cell: 3 s of a 100,000-row
# spill). Recording "no pyodide here" in sys.modules makes the same ImportError
# immediate. This server never runs under Pyodide.
sys.modules.setdefault("pyodide", None)

import asyncio  # noqa: E402
import contextvars  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable, Iterable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import xlwings as xw  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import FileResponse, JSONResponse, Response  # noqa: E402

from . import udfs  # noqa: E402
from .errors import InputError  # noqa: E402

logger = logging.getLogger(__name__)

CALL_PATH = "/xlwings/custom-functions-call"
DEFAULT_PUBLIC_URL = "https://localhost:8000"  # what addin/manifest.xml ships with
ADDIN_DIR_ENV = "LANXI_XL_ADDIN_DIR"
PUBLIC_URL_ENV = "LANXI_XL_PUBLIC_URL"


def _xlwings_server() -> types.ModuleType:
    """``xlwings.server``, with the Office.js engine registered.

    If xlwings was imported before the environment above was set (e.g. by the CLI),
    its import-time licence check skipped the PRO engines; register the one custom
    functions convert with instead of failing on the first call.
    """
    import xlwings.server as xws

    if "officejs" not in [engine.name for engine in xw.engines]:
        from xlwings.pro import _xlofficejs

        xw.engines.add(xw.Engine(impl=_xlofficejs.engine))
    return xws


xws = _xlwings_server()

# Per request: messages of the bad cells of a range, as [row, col, message].
_cell_errors: contextvars.ContextVar[list[list[Any]] | None] = contextvars.ContextVar(
    "lanxi_cell_errors", default=None
)


# --- what Excel calls ----------------------------------------------------------------


def _excel_value(name: str, args: tuple[Any, ...]) -> Any:
    """Run one award function for xlwings Server: floats, errors as xlwings expects."""
    try:
        result, errors = udfs.evaluate(name, args, float)
    except InputError as exc:
        raise xw.XlwingsError(str(exc)) from None
    if not errors:
        return result
    if not isinstance(result, list) or _cells(result) == 1:
        raise xw.XlwingsError(str(errors[0].error))
    sink = _cell_errors.get()
    two_d = isinstance(result[0], list)
    for err in errors:
        if two_d:
            result[err.row][err.col] = "#VALUE!"
        else:
            result[err.row] = "#VALUE!"
        if sink is not None:
            sink.append([err.row, err.col, str(err.error)])
    return result


def _cells(result: list[Any]) -> int:
    return len(result) * (len(result[0]) if result and isinstance(result[0], list) else 1)


def _signature(params: Iterable[str], vararg: str | None = None) -> inspect.Signature:
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter(p, kind) for p in params]
    if vararg:
        parameters.append(inspect.Parameter(vararg, inspect.Parameter.VAR_POSITIONAL))
    return inspect.Signature(parameters)


def _register(
    func: Callable[..., Any],
    python_name: str,
    doc: str,
    params: dict[str, dict[str, Any]],
    vararg: str | None = None,
) -> Callable[..., Any]:
    """Give ``func`` the signature, help and xlwings Server metadata of ``python_name``.

    The metadata id (and the name the add-in sends back) stays the Python name; the
    Excel-facing name drops the ``LANXI_`` prefix because the manifest's namespace
    supplies it.
    """
    func.__name__ = func.__qualname__ = python_name
    func.__doc__ = doc
    names = [p for p in params if p != vararg]
    func.__signature__ = _signature(names, vararg)  # type: ignore[attr-defined]
    for param, options in params.items():
        func = xws.arg(param, **options)(func)
    return xws.func(name=python_name[len(udfs.PREFIX):])(func)


def _award(python_name: str, spec: udfs.Spec) -> Callable[..., Any]:
    async def call(*args: Any) -> Any:
        # In a worker thread: a 100,000-row spill must not stall other users' calls.
        return await asyncio.to_thread(_excel_value, python_name, args)

    params = {
        p: {"doc": udfs.param_doc(spec, p), "ndim": 2, "err_to_str": True} for p in spec.params
    }
    return _register(call, python_name, udfs.description(spec), params)


def _explain_function() -> Callable[..., Any]:
    def call(function_name: Any, *args: Any) -> list[list[str]]:
        try:
            return udfs.explain_lines(function_name, args)
        except InputError as exc:
            raise xw.XlwingsError(str(exc)) from None

    docs = udfs.OTHER_FUNCTIONS["LANXI_EXPLAIN"]
    params = {name: {"doc": doc} for name, doc in docs.items()}
    return _register(call, "LANXI_EXPLAIN", inspect.getdoc(udfs.LANXI_EXPLAIN) or "", params, "args")


def _policy_function() -> Callable[..., Any]:
    def call() -> str:
        return udfs.policy_text()

    return _register(call, "LANXI_POLICY", inspect.getdoc(udfs.LANXI_POLICY) or "", {})


def function_module(extra: Iterable[Callable[..., Any]] = ()) -> types.ModuleType:
    """The module xlwings Server reads functions from: every 兰溪 function plus ``extra``.

    ``extra`` are plain functions named ``LANXI_<NAME>`` (e.g. the benchmark's echo);
    they are registered with default converters under ``LANXI.<NAME>``.
    """
    module = types.ModuleType("lanxi_xl.server_functions", "兰溪电商政策函数（xlwings Server）")
    for python_name, spec in udfs.specs().items():
        setattr(module, python_name, _award(python_name, spec))
    module.LANXI_EXPLAIN = _explain_function()
    module.LANXI_POLICY = _policy_function()
    for func in extra:
        name = func.__name__
        if not name.startswith(udfs.PREFIX):
            raise ValueError(f"extra function names must start with {udfs.PREFIX}: {name}")
        setattr(module, name, xws.func(name=name[len(udfs.PREFIX):])(func))
    return module


# --- the add-in files ------------------------------------------------------------------


def addin_dir() -> Path:
    """Where manifest.xml, taskpane.html, functions.js and icons live."""
    configured = os.environ.get(ADDIN_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "addin"


def custom_functions_code(module: types.ModuleType, folder: Path) -> str:
    """Our call-forwarding runtime plus one ``CustomFunctions.associate`` per function."""
    js = (folder / "functions.js").read_text(encoding="utf-8")
    js = js.replace("placeholder_xlwings_version", xw.__version__).replace(
        "placeholder_custom_functions_call_path", CALL_PATH
    )
    lines = [js.rstrip(), ""]
    for name, obj in inspect.getmembers(module):
        if hasattr(obj, "__xlfunc__"):
            lines.append(
                f'CustomFunctions.associate("{name.upper()}", function () {{ '
                f'return lanxiCall("{name}", Array.prototype.slice.call(arguments)); }});'
            )
    return "\n".join(lines) + "\n"


def manifest(folder: Path, public_url: str) -> str:
    """addin/manifest.xml with its URLs pointing at ``public_url``."""
    text = (folder / "manifest.xml").read_text(encoding="utf-8")
    return text.replace(DEFAULT_PUBLIC_URL, public_url.rstrip("/"))


# --- the app ----------------------------------------------------------------------------


def create_app(
    extra_functions: Iterable[Callable[..., Any]] = (),
    public_url: str | None = None,
    addin: Path | None = None,
):
    """The FastAPI app serving the functions and the add-in.

    ``public_url``: the https origin Excel reaches this server at (written into the
    manifest); default ``$LANXI_XL_PUBLIC_URL`` or the address of each request.
    """
    module = function_module(extra_functions)
    folder = addin or addin_dir()
    public_url = public_url or os.environ.get(PUBLIC_URL_ENV)
    meta = xws.custom_functions_meta(module)
    meta_json = json.dumps(meta, ensure_ascii=False)
    code = custom_functions_code(module, folder)

    app = FastAPI(title="lanxi-xl 兰溪电商政策函数", docs_url=None, redoc_url=None, openapi_url=None)

    def _error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status)

    @app.get("/")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "policy": udfs.policy_text(), "functions": len(meta["functions"])}

    @app.get("/xlwings/custom-functions-meta")
    async def custom_functions_meta() -> Response:
        return Response(meta_json, media_type="application/json; charset=utf-8")

    @app.get("/xlwings/custom-functions-code")
    async def custom_functions_code_route() -> Response:
        return Response(code, media_type="text/javascript; charset=utf-8")

    @app.post(CALL_PATH)
    async def custom_functions_call(request: Request) -> Response:
        try:
            data = json.loads(await request.body())
            name = data["func_name"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "请求格式有误：应为 xlwings 自定义函数调用（含 func_name 和 args）")
        if not isinstance(getattr(module, str(name), None), types.FunctionType):
            return _error(404, f"没有名为“{name}”的兰溪政策函数")
        sink: list[list[Any]] = []
        token = _cell_errors.set(sink)
        try:
            result = await xws.custom_functions_call(data, module)
        except xw.XlwingsError as exc:
            return _error(400, str(exc))
        except (KeyError, TypeError) as exc:
            logger.warning("bad custom function call %s: %r", name, exc)
            return _error(400, f"调用 {name} 的参数有误：{exc}")
        except Exception:  # noqa: BLE001 - the cell must show something readable
            logger.exception("custom function %s failed", name)
            return _error(500, f"{name} 计算出错，请联系系统管理员查看服务器日志")
        finally:
            _cell_errors.reset(token)
        body: dict[str, Any] = {"result": result}
        if sink:
            body["errors"] = sink
        return Response(
            json.dumps(body, ensure_ascii=False, separators=(",", ":")),
            media_type="application/json; charset=utf-8",
        )

    @app.get("/manifest.xml")
    async def manifest_route(request: Request) -> Response:
        origin = public_url or str(request.base_url)
        return Response(manifest(folder, origin), media_type="application/xml; charset=utf-8")

    @app.get("/taskpane.html")
    async def taskpane() -> FileResponse:
        return FileResponse(folder / "taskpane.html", media_type="text/html; charset=utf-8")

    @app.get("/icons/{name}")
    async def icon(name: str) -> Response:
        if not re.fullmatch(r"icon-\d+\.png", name) or not (folder / "icons" / name).is_file():
            return _error(404, "没有这个图标")
        return FileResponse(folder / "icons" / name, media_type="image/png")

    return app


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    public_url: str | None = None,
) -> None:
    """Run the server (``lanxi-xl serve``). Excel needs https: pass a certificate
    and key, or put the server behind an https reverse proxy and give ``public_url``."""
    import uvicorn

    app = create_app(public_url=public_url)
    uvicorn.run(app, host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
