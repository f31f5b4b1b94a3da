"""Benchmark: one =LANXI.CROSSBORDER over a 100,000-row column through xlwings Server.

Starts the real server (uvicorn, loopback, in a subprocess) with one extra function,
LANXI_ECHO, which returns its input unchanged with the same argument conversion as
the award functions: the transport floor (HTTP, JSON, xlwings' conversion). Then
POSTs exactly what the Office.js add-in sends and times the round trip of

* ECHO over the column (floor),
* CROSSBORDER over the same column of distinct figures (every row computed),
* CROSSBORDER over a column of repeated figures (what memoising identical rows buys).

Run:  python bench/bench_server.py [--rows 100000] [--repeat 5]
Prints a Markdown table; BENCHMARKS.md records the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.5  # CROSSBORDER must stay within 1.5x of the echo floor
ROWS = 10**5


def LANXI_ECHO(values):
    """回显输入（仅用于基准测试）。"""
    return values


def _serve(port: int) -> None:
    """Child process: the real app plus LANXI_ECHO."""
    sys.path.insert(0, str(ROOT))
    import uvicorn

    from lanxi_xl import server  # sets the xlwings environment first

    echo = server.xws.arg("values", ndim=2, err_to_str=True, doc="任意区域")(LANXI_ECHO)
    app = server.create_app(extra_functions=[echo])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _body(func_name: str, column: list[list[object]]) -> bytes:
    import xlwings

    return json.dumps(
        {
            "client": "Office.js",
            "func_name": func_name,
            "args": [column],
            "caller_address": "[bench.xlsx]Sheet1!B2",
            "culture_info_name": "zh-CN",
            "date_format": None,
            "version": xlwings.__version__,
            "runtime": "1.4",
        }
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.serve:
        _serve(opts.serve)
        return

    import httpx

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            for _ in range(200):
                try:
                    client.get("/")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            rng = random.Random(2022)
            distinct = [[round(rng.uniform(0, 3_000_000), 2)] for _ in range(opts.rows)]
            # 50 figures (and blanks) repeated: a bureau's column has many equal rows
            common = [round(rng.uniform(0, 3_000_000), -3) for _ in range(50)] + [""]
            repeated = [[rng.choice(common)] for _ in range(opts.rows)]
            cases = [
                ("ECHO（传输下限）", _body("LANXI_ECHO", distinct)),
                ("CROSSBORDER，各行金额不同", _body("LANXI_CROSSBORDER", distinct)),
                ("CROSSBORDER，金额重复", _body("LANXI_CROSSBORDER", repeated)),
            ]
            timings: dict[str, list[float]] = {}
            for label, body in cases:
                client.post("/xlwings/custom-functions-call", content=body)  # warm-up
                runs = []
                for _ in range(opts.repeat):
                    start = time.perf_counter()
                    response = client.post(
                        "/xlwings/custom-functions-call",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    runs.append(time.perf_counter() - start)
                    response.raise_for_status()
                    assert len(response.json()["result"]) == opts.rows
                timings[label] = runs
    finally:
        proc.terminate()
        proc.wait(10)

    floor = statistics.median(timings[cases[0][0]])
    print(f"rows={opts.rows} repeat={opts.repeat} python={platform.python_version()}")
    print(f"machine: {platform.uname().system} {platform.uname().release} {platform.machine()}, nproc={os.cpu_count()}")
    print()
    print("| 调用 | 中位数 (s) | 最快 (s) | 相对下限 |")
    print("|---|---:|---:|---:|")
    ok = True
    for label, runs in timings.items():
        median = statistics.median(runs)
        ratio = median / floor
        print(f"| {label} | {median:.3f} | {min(runs):.3f} | {ratio:.2f}× |")
        if label.startswith("CROSSBORDER") and ratio > TARGET:
            ok = False
    print()
    print(f"目标：≤ {TARGET}× 下限 — {'达到' if ok else '未达到'}")


if __name__ == "__main__":
    main()
