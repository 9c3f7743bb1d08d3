"""The HTTP load generator: its own process, asyncio, one keep-alive connection per client.

    .venv/bin/python -m bench.http_load PLAN.json        # prints the figures as JSON on stdout

PLAN.json (written by bench/http_bench.py):
    {"host": "127.0.0.1", "port": 8123, "max_seconds": 60, "timeout_s": 30, "body": {"data": {...}},
     "phases": [{"key": "warmup", "rate": null, "gated": false}, {"key": "capacity", "rate": null},
                {"key": "paced", "rate": 6.0}],
     "clients": [{"token": "...", "warmup": ["task id", ...], "capacity": [...], "paced": [...]}, ...]}

Each client completes its own open tasks (`POST /api/v1/tasks/{id}/complete`, bearer token, the
JSON body), one request at a time on its connection. Phase by phase, every client goes through
its list for that phase: closed loop (the next request when the last one answers: the server's
capacity), or paced at `rate` requests/s per client (open loop: the latency at a given load,
counted from when each request was due, so a request held back by a slow answer still counts its
wait). A gated phase starts all clients at once. Each phase is bounded by its task lists and by
`max_seconds` (no new request after it). Any answer but 200, a timeout or a broken connection
counts as an error (the client reconnects). Only the standard library: nothing to install.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

from bench.common import percentile


class Connection:
    """A minimal HTTP/1.1 keep-alive client connection (Content-Length or chunked responses)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}",
                *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        self.writer.write("\r\n".join(head).encode("latin-1") + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length, chunked, close = None, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.lower() == "close":
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0].strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            payload = b"".join(parts)
        elif length is not None:
            payload = await self.reader.readexactly(length)
        else:
            payload = await self.reader.read()
            close = True
        if close:
            await self.close()
        return status, payload


async def _client(plan: dict[str, Any], client: dict[str, Any], ids: list[str], rate: float | None,
                  gate: asyncio.Event | None, deadline: list[float], samples: list[tuple[float, float]],
                  errors: list[str], body: bytes) -> None:
    conn = Connection(plan["host"], plan["port"])
    headers = {"Authorization": f"Bearer {client['token']}", "Content-Type": "application/json"}
    timeout = plan.get("timeout_s", 30)
    try:
        await conn.open()
    except OSError as exc:
        errors.append(f"connect: {exc!r}")
    if gate is not None:
        await gate.wait()
    began = time.perf_counter()
    for n, task_id in enumerate(ids):
        if time.perf_counter() >= deadline[0]:
            break
        scheduled = None
        if rate:
            scheduled = began + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        t0 = time.perf_counter()
        try:
            status, payload = await asyncio.wait_for(
                conn.post(f"/api/v1/tasks/{task_id}/complete", body, headers), timeout)
            if status != 200:
                errors.append(f"{status} {payload[:200]!r}")
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            errors.append(repr(exc)[:200])
            await conn.close()
        t1 = time.perf_counter()
        # (service time, time since the request was due): paced, a request sent late because the
        # previous answer came late still counts its wait (no coordinated omission).
        samples.append((t1 - t0, t1 - (scheduled if scheduled is not None else t0)))
    await conn.close()


def _pct(ordered: list[float], p: float) -> float:
    """In ms; 0 for no samples."""
    return round(percentile(ordered, p) * 1000, 2) if ordered else 0.0


async def _phase(plan: dict[str, Any], key: str, rate: float | None, gated: bool) -> dict[str, Any]:
    """All clients through their `key` lists: closed loop (rate None) or `rate` requests/s per client."""
    body = json.dumps(plan["body"]).encode()
    samples: list[tuple[float, float]] = []
    errors: list[str] = []
    gate = asyncio.Event() if gated else None
    deadline = [float("inf")]
    tasks = [asyncio.create_task(_client(plan, c, c[key], rate, gate, deadline, samples, errors, body))
             for c in plan["clients"]]
    await asyncio.sleep(0.2 if gated else 0)  # every client connected and waiting at the gate
    t0 = time.perf_counter()
    deadline[0] = t0 + plan["max_seconds"]
    if gate is not None:
        gate.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    service = sorted(s for s, _late in samples)
    due = sorted(late for _s, late in samples)
    planned = sum(len(c[key]) for c in plan["clients"])
    done = len(samples) - sum(1 for e in errors if not e.startswith("connect:"))
    out = {"mode": f"open loop, {rate:g}/s per client ({rate * len(plan['clients']):g}/s offered)" if rate
           else "closed loop", "planned": planned, "requests": len(samples), "completions": done,
           "errors": len(errors), "error_samples": errors[:5], "wall_s": round(wall, 3),
           "completions_per_s": round(done / wall, 1) if wall else 0.0,
           "stopped_by_time": len(samples) < planned,
           "latency_ms_median": round(statistics.median(service) * 1000, 2) if service else 0.0,
           "latency_ms_p95": _pct(service, 95), "latency_ms_p99": _pct(service, 99),
           "latency_ms_max": _pct(service, 100)}
    if rate:
        out.update({"latency_from_schedule_ms_median": round(statistics.median(due) * 1000, 2) if due else 0.0,
                    "latency_from_schedule_ms_p95": _pct(due, 95), "latency_from_schedule_ms_p99": _pct(due, 99)})
    return out


async def _main(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan's phases in order: [{"key": "warmup", "rate": null, "gated": false}, ...]."""
    return {phase["key"]: await _phase(plan, phase["key"], phase.get("rate"), phase.get("gated", True))
            for phase in plan["phases"]}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as handle:
        plan = json.load(handle)
    cpu0 = time.process_time()
    result = asyncio.run(_main(plan))
    print(json.dumps({"phases": result, "cpu_s": round(time.process_time() - cpu0, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
