"""xlwings Server: the real app under uvicorn on a loopback port, called over HTTP with
the bodies the Office.js add-in (addin/functions.js) sends.

Expected amounts come from the hand-worked cases in tests/cases/lanxi-2022.yaml.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import xlwings

from lanxi_xl import udfs
from lanxi_xl.policy import current_policy

from test_udfs import CALLS, _expected  # the hand-worked cases as function calls

ROOT = Path(__file__).resolve().parents[1]
CJK = re.compile(r"[\u4e00-\u9fff]")
CALL = "/xlwings/custom-functions-call"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """`lanxi_xl.server.serve` in its own process (fresh xlwings environment)."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("XLWINGS_ON_SERVER", None)
    env.pop("XLWINGS_LICENSE_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", f"from lanxi_xl.server import serve; serve(port={port})"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("/").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"server did not start:\n{out}")
            time.sleep(0.05)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def body(func_name: str, args: list[Any], runtime: str = "1.4") -> dict[str, Any]:
    """What addin/functions.js posts (the xlwings Server custom-function call)."""
    return {
        "client": "Office.js",
        "func_name": func_name,
        "args": args,
        "caller_address": "[台账.xlsx]Sheet1!C2",
        "culture_info_name": "zh-CN",
        "date_format": None,
        "version": xlwings.__version__,
        "runtime": runtime,
    }


def cell(value: Any) -> list[list[Any]]:
    """An Office.js matrix argument: a scalar is sent as a 1×1 range, blank as ""."""
    if isinstance(value, list):
        return [[("" if v is None else v) for v in row] for row in value]
    return [["" if value is None else value]]


# --- metadata and code ------------------------------------------------------------------


def test_every_function_is_registered_under_the_lanxi_namespace(server: httpx.Client) -> None:
    meta = server.get("/xlwings/custom-functions-meta").json()
    by_id = {f["id"]: f for f in meta["functions"]}
    assert set(by_id) == set(udfs.FUNCTIONS) | {"LANXI_EXPLAIN", "LANXI_POLICY"}
    policy = current_policy()
    for name, spec in udfs.specs().items():
        fn = by_id[name]
        assert fn["name"] == name.removeprefix("LANXI_")  # the manifest adds LANXI.
        for cid in spec.clauses:
            assert policy.clause(cid).cite in fn["description"]
            assert policy.clause(cid).title in fn["description"]
        assert [p["name"] for p in fn["parameters"]] == list(spec.params)
        for p in fn["parameters"]:
            assert CJK.search(p["description"]) and p["dimensionality"] == "matrix"
    assert by_id["LANXI_EXPLAIN"]["parameters"][-1].get("repeating") is True
    assert CJK.search(by_id["LANXI_POLICY"]["description"])


def test_functions_code_associates_every_function(server: httpx.Client) -> None:
    response = server.get("/xlwings/custom-functions-code")
    assert response.headers["content-type"].startswith("text/javascript")
    js = response.text
    assert "placeholder_" not in js and f'"{xlwings.__version__}"' in js and f'"{CALL}"' in js
    for name in [*udfs.FUNCTIONS, "LANXI_EXPLAIN", "LANXI_POLICY"]:
        assert f'CustomFunctions.associate("{name}", function () {{ return lanxiCall("{name}",' in js


def test_manifest_points_at_this_server(server: httpx.Client) -> None:
    response = server.get("/manifest.xml")
    root = ET.fromstring(response.content)
    ns = {"o": "http://schemas.microsoft.com/office/appforoffice/1.1",
          "bt": "http://schemas.microsoft.com/office/officeappbasictypes/1.0"}
    urls = {u.get("id"): u.get("DefaultValue") for u in root.iter(f"{{{ns['bt']}}}Url")}
    origin = str(server.base_url).rstrip("/")
    assert urls["Functions.Metadata.Url"] == origin + "/xlwings/custom-functions-meta"
    assert urls["Functions.Script.Url"] == origin + "/xlwings/custom-functions-code"
    strings = {s.get("id"): s.get("DefaultValue") for s in root.iter(f"{{{ns['bt']}}}String")}
    assert strings["Functions.Namespace"] == "LANXI"
    assert "localhost:8000" not in response.text
    images = [i.get("DefaultValue") for i in root.iter(f"{{{ns['bt']}}}Image") if i.get("DefaultValue")]
    assert len(images) == 3
    for url in [*urls.values(), *images]:
        assert server.get(url.removeprefix(origin)).status_code == 200, url
    page = server.get("/taskpane.html").text
    assert "office.js" in page and "/xlwings/custom-functions-code" in page


# --- calls --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(udfs.FUNCTIONS))
def test_hand_worked_cases_through_the_server(server: httpx.Client, name: str) -> None:
    """Every case of a function: one call per case, then all of them as one spilled column."""
    rows = [(case, args) for case, (n, args) in CALLS if n == name]
    for case, args in rows:
        expected = _expected(case, args)
        response = server.post(CALL, json=body(name, [cell(a) for a in args]))
        if isinstance(expected, str):
            assert response.status_code == 400, (case, response.text)
            assert CJK.search(response.json()["detail"])
        else:
            assert response.status_code == 200, (case, response.text)
            want = "" if expected is None else float(expected)
            assert response.json() == {"result": [[want]]}, case
    if udfs.specs()[name].kind == "items":
        return
    columns = [[[("" if args[i] is None else args[i])] for _, args in rows] for i in range(len(rows[0][1]))]
    data = server.post(CALL, json=body(name, columns)).json()
    errors = {r: msg for r, c, msg in data.get("errors", [])}
    for i, (case, args) in enumerate(rows):
        expected = _expected(case, args)
        if isinstance(expected, str):
            assert data["result"][i] == [{"type": "Error", "errorType": "Value"}]
            assert CJK.search(errors[i])
        else:
            assert i not in errors and data["result"][i] == [float(expected)]


def test_a_100000_row_column_spills(server: httpx.Client) -> None:
    cases = [(args[0], _expected(c, args)) for c, (n, args) in CALLS if n == "LANXI_CROSSBORDER"]
    cases = [(v, e) for v, e in cases if not isinstance(e, str)] + [(None, None)]
    column = [[cases[i % len(cases)][0]] for i in range(100_000)]
    response = server.post(CALL, json=body("LANXI_CROSSBORDER", [cell(column)]))
    assert response.status_code == 200
    result = response.json()["result"]
    assert len(result) == 100_000 and "errors" not in response.json()
    for i in (0, 1, 2, 99_998, 99_999):
        expected = cases[i % len(cases)][1]
        assert result[i] == ["" if expected is None else float(expected)]


def test_bad_single_input_is_value_error_with_chinese_message(server: httpx.Client) -> None:
    response = server.post(CALL, json=body("LANXI_PARK", [cell(25), cell(0), cell(85), cell(60_000_000)]))
    assert response.status_code == 400
    assert response.json()["detail"] == "「电商企业整体入驻率」应为 0 到 1 之间的小数（如 85% 填 0.85 或 85%），收到“85”"
    response = server.post(CALL, json=body("LANXI_DEMO", [cell("市级")]))
    assert response.status_code == 400 and "国家级" in response.json()["detail"]


def test_bad_rows_of_a_range_carry_their_messages(server: httpx.Client) -> None:
    column = [[1_200_000], ["abc"], [""], [-1]]
    data = server.post(CALL, json=body("LANXI_CROSSBORDER", [column])).json()
    good = float(udfs.LANXI_CROSSBORDER(1_200_000))
    error = {"type": "Error", "errorType": "Value"}
    assert data["result"] == [[good], [error], [""], [error]]
    assert [(r, c) for r, c, _ in data["errors"]] == [(1, 0), (3, 0)]
    assert "abc" in data["errors"][0][2] and "不小于 0" in data["errors"][1][2]
    # Excel without data types (CustomFunctionsRuntime < 1.4): the error as text
    old = server.post(CALL, json=body("LANXI_CROSSBORDER", [column], runtime="1.1")).json()
    assert old["result"][1] == ["#VALUE!"]


def test_an_error_cell_as_input_is_reported_not_blanked(server: httpx.Client) -> None:
    na = {"type": "Error", "errorType": "NotAvailable", "basicValue": "#N/A"}
    response = server.post(CALL, json=body("LANXI_AGRI", [[[na]]]))
    assert response.status_code == 400 and "#N/A" in response.json()["detail"]


def test_ranges_events_explain_and_policy(server: httpx.Client) -> None:
    grid = server.post(CALL, json=body("LANXI_PARK", [[[25], [0]], [[0]], [[0.9]], [[60_000_000]]])).json()
    assert grid["result"] == [[float(udfs.LANXI_PARK(25, 0, 0.9, 60_000_000))], [0.0]]
    events = server.post(CALL, json=body("LANXI_EVENTS", [[[30_000], [50_000], [""]]])).json()
    assert events["result"] == [[float(udfs.LANXI_EVENTS([30_000, 50_000]))]]
    lines = server.post(CALL, json=body("LANXI_EXPLAIN", [[["CROSSBORDER"]], [[[1_200_000]]]])).json()["result"]
    assert lines[0][0].startswith("第8条") and any("适用第2档" in line[0] for line in lines)
    policy = server.post(CALL, json=body("LANXI_POLICY", [])).json()["result"]
    assert policy == [[udfs.LANXI_POLICY()]]
    blank = server.post(CALL, json=body("LANXI_PLATFORM", [[[""]], [[""]]])).json()
    assert blank["result"] == [[""]]


def test_unknown_function_and_malformed_body(server: httpx.Client) -> None:
    response = server.post(CALL, json=body("LANXI_NOPE", []))
    assert response.status_code == 404 and "LANXI_NOPE" in response.json()["detail"]
    response = server.post(CALL, content=b"not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and CJK.search(response.json()["detail"])
    response = server.post(CALL, json=body("LANXI_RENT", [cell(1)]))
    assert response.status_code == 400 and "需要 6 个参数" in response.json()["detail"]


def test_health_names_the_policy(server: httpx.Client) -> None:
    data = server.get("/").json()
    assert data["status"] == "ok" and current_policy().id in data["policy"]
    assert Decimal(data["functions"]) == len(udfs.FUNCTIONS) + 2


# --- the add-in's JavaScript against the server -----------------------------------------------

NODE_SHIM = r"""
const base = process.argv[2];
const registry = {};
globalThis.window = { location: { origin: base } };
globalThis.Office = {
  onReady: (callback) => { if (callback) callback(); return Promise.resolve(); },
  context: { contentLanguage: "zh-CN", requirements: { isSetSupported: () => true } },
};
globalThis.CustomFunctions = {
  associate: (id, fn) => { registry[id] = fn; },
  ErrorCode: { invalidValue: "#VALUE!" },
  Error: class { constructor(code, message) { this.code = code; this.message = message; } },
};
(async () => {
  const code = await (await fetch(base + "/xlwings/custom-functions-code")).text();
  new Function(code)();
  const invocation = { address: "Sheet1!C2", parameterAddresses: [] };
  const out = { ids: Object.keys(registry).sort() };
  out.spill = await registry.LANXI_CROSSBORDER([[1200000], ["abc"], [""]], invocation);
  try {
    out.single = await registry.LANXI_PARK([[25]], [[0]], [[85]], [[60000000]], invocation);
  } catch (error) {
    out.thrown = error;
  }
  out.explain = await registry.LANXI_EXPLAIN([["CROSSBORDER"]], [[[1200000]]], invocation);
  console.log(JSON.stringify(out));
})().catch((error) => { console.error(error); process.exit(1); });
"""


def test_addin_javascript_calls_the_server(server: httpx.Client, tmp_path: Path) -> None:
    """addin/functions.js as Excel runs it (Office and CustomFunctions stubbed in Node)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js not installed: the add-in's JavaScript is not exercised")
    script = tmp_path / "excel.js"
    script.write_text(NODE_SHIM, encoding="utf-8")
    run = subprocess.run([node, str(script), str(server.base_url).rstrip("/")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["ids"] == sorted([*udfs.FUNCTIONS, "LANXI_EXPLAIN", "LANXI_POLICY"])
    good = float(udfs.LANXI_CROSSBORDER(1_200_000))
    assert out["spill"][0] == [good] and out["spill"][2] == [""]
    assert out["spill"][1][0]["code"] == "#VALUE!" and "abc" in out["spill"][1][0]["message"]
    assert out["thrown"]["code"] == "#VALUE!" and "入驻率" in out["thrown"]["message"]
    assert out["explain"][0][0].startswith("第8条")
