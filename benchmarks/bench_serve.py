"""Latency of the probe server's POST /api/probe for EfficientNet-Lite0, over real HTTP (and, with
--paint, of the paint page's POST /api/paint for world_generator).

    python benchmarks/bench_serve.py [--requests 15] [--layers blocks.2,blocks.4,blocks.6,conv_stem]
    python benchmarks/bench_serve.py --paint [RUN] [--requests 15]     # world_generator + world_segmenter

Starts the app once (the model is built once, at start) under uvicorn on 127.0.0.1, sends
scikit-image's `chelsea` (451x300 JPEG) as a multipart upload, and prints per layer the fastest,
median and slowest request, the bare forward pass (alternated with the requests; median) and the
ratio of the medians. Target: a probe answers within 1 s on a CPU. On a shared CPU, other
processes only ever add time: the fastest request is the cost of the work itself.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import threading
import time

import torch


def serve(app):
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=15, help="timed requests per layer (after one warm-up)")
    p.add_argument("--layers", default="blocks.2,blocks.4,blocks.6,conv_stem")
    p.add_argument(
        "--paint",
        nargs="?",
        const="",
        default=None,
        metavar="RUN",
        help="time POST /api/paint for world_generator instead (RUN: its dissection, for concepts)",
    )
    args = p.parse_args()
    if args.paint is not None:
        return bench_paint(args.paint or None, args.requests)

    import httpx
    from PIL import Image

    from unitscope.models import create_model, get_info
    from unitscope.serve import create_app
    from unitscope.serve.samples import sample_jpeg

    t0 = time.perf_counter()
    model = create_model("efficientnet_lite0")
    app = create_app(model)
    print(
        f"start-up (model + layer listing): {time.perf_counter() - t0:.1f} s, torch threads {torch.get_num_threads()}"
    )
    jpeg = sample_jpeg("chelsea")

    import io

    x = get_info(model).transform()(Image.open(io.BytesIO(jpeg)))[None]  # [1, 3, 224, 224]

    def forward() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            model(x)
        return time.perf_counter() - t

    server, thread, url = serve(app)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            print(
                f"{'layer':10s} {'maps':>11s} {'reply kB':>8s} {'probe ms: fastest':>17s} {'median':>7s} "
                f"{'slowest':>7s} {'forward ms':>10s} {'ratio':>6s}"
            )
            worst = 0.0
            for layer in args.layers.split(","):
                times, bare, size, shape = [], [], 0, None
                for i in range(args.requests + 1):
                    bare.append(forward())  # alternated, so load from other processes hits both
                    t = time.perf_counter()
                    r = client.post(
                        "/api/probe", params={"layer": layer}, files={"image": ("chelsea.jpg", jpeg, "image/jpeg")}
                    )
                    took = time.perf_counter() - t
                    r.raise_for_status()
                    if i:  # the first request of a layer is a warm-up
                        times.append(took)
                    size, shape = len(r.content), r.json()["shape"]
                med, fwd = statistics.median(times) * 1000, statistics.median(bare[1:]) * 1000
                worst = max(worst, med)
                print(
                    f"{layer:10s} {'x'.join(map(str, shape)):>11s} {size / 1024:8.0f} {min(times) * 1000:17.0f} "
                    f"{med:7.0f} {max(times) * 1000:7.0f} {fwd:10.0f} {med / fwd:6.2f}"
                )
            verdict = "met" if worst < 1000 else "MISSED"
            print(
                f"target: a probe answers within 1 s -- {verdict} (slowest layer's median {worst:.0f} ms; "
                f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
            )
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def bench_paint(run: str | None, requests: int) -> None:
    """POST /api/paint for world_generator: per layer and action, one stroke over a quarter of the
    map (the top 10 units of the run's commonest concept there, else units 0..9), one new seed per
    request (so the head runs each time: the cache is cold), and a second request on the same seed
    (the head cached). Prints wall time and the process's CPU time per request (server and client
    share this process), with the load average."""
    import httpx

    from unitscope.models import create_model
    from unitscope.segment import create_segmenter
    from unitscope.serve import create_app

    t0, c0 = time.perf_counter(), time.process_time()
    app = create_app(create_model("world_generator"), run, segmenter=create_segmenter("world_segmenter"))
    print(
        f"start-up (generator, segmenter, layer listing): {time.perf_counter() - t0:.1f} s wall, "
        f"{time.process_time() - c0:.1f} s CPU; torch threads {torch.get_num_threads()}"
    )
    server, thread, url = serve(app)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            info = client.get("/api/paint/info").json()
            print(
                f"{'layer':6s} {'grid':>6s} {'action':>6s} {'what':>14s} {'cold ms: fastest':>16s} {'median':>6s} "
                f"{'slowest':>7s} {'CPU ms':>6s} {'cached ms':>9s} {'CPU ms':>6s}"
            )
            worst = 0.0
            for layer in info["layers"]:
                h, w = layer["height"], layer["width"]
                mask = [[int(y >= h // 2 and x < w // 2) for x in range(w)] for y in range(h)]
                spec: dict = (
                    {"concept": layer["concepts"][0]["concept"]}
                    if layer["concepts"]
                    else {"units": list(range(min(10, layer["units"])))}
                )
                for action in ("add", "remove"):
                    body = {"layer": layer["name"], "action": action, "mask": mask, **spec}
                    client.post("/api/paint", json={**body, "seed": 10_000}).raise_for_status()  # warm-up, levels
                    cold, cold_cpu, warm, warm_cpu = [], [], [], []
                    for i in range(requests):
                        for times, cpus in ((cold, cold_cpu), (warm, warm_cpu)):  # a new seed, then the same
                            t, c = time.perf_counter(), time.process_time()
                            client.post("/api/paint", json={**body, "seed": i}).raise_for_status()
                            times.append((time.perf_counter() - t) * 1000)
                            cpus.append((time.process_time() - c) * 1000)
                    med = statistics.median(cold)
                    worst = max(worst, med)
                    what = spec.get("concept") or "units 0-9"
                    print(
                        f"{layer['name']:6s} {f'{h}x{w}':>6s} {action:>6s} {what:>14s} {min(cold):16.0f} {med:6.0f} "
                        f"{max(cold):7.0f} {statistics.median(cold_cpu):6.0f} {statistics.median(warm):9.0f} "
                        f"{statistics.median(warm_cpu):6.0f}"
                    )
            verdict = "met" if worst < 1000 else "MISSED"
            print(
                f"target: a paint answers within 1 s -- {verdict} (slowest median {worst:.0f} ms; load average "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
            )
    finally:
        server.should_exit = True
        thread.join(timeout=10)


if __name__ == "__main__":
    main()
