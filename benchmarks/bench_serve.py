"""Latency of the probe server's POST /api/probe for EfficientNet-Lite0, over real HTTP.

    python benchmarks/bench_serve.py [--requests 15] [--layers blocks.2,blocks.4,blocks.6,conv_stem]

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
    args = p.parse_args()

    import httpx
    from PIL import Image

    from unitscope.models import create_model, get_info
    from unitscope.serve import create_app
    from unitscope.serve.samples import sample_jpeg

    t0 = time.perf_counter()
    model = create_model("efficientnet_lite0")
    app = create_app(model)
    print(f"start-up (model + layer listing): {time.perf_counter() - t0:.1f} s, torch threads {torch.get_num_threads()}")
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
            print(f"{'layer':10s} {'maps':>11s} {'reply kB':>8s} {'probe ms: fastest':>17s} {'median':>7s} "
                  f"{'slowest':>7s} {'forward ms':>10s} {'ratio':>6s}")
            worst = 0.0
            for layer in args.layers.split(","):
                times, bare, size, shape = [], [], 0, None
                for i in range(args.requests + 1):
                    bare.append(forward())  # alternated, so load from other processes hits both
                    t = time.perf_counter()
                    r = client.post("/api/probe", params={"layer": layer},
                                    files={"image": ("chelsea.jpg", jpeg, "image/jpeg")})
                    took = time.perf_counter() - t
                    r.raise_for_status()
                    if i:  # the first request of a layer is a warm-up
                        times.append(took)
                    size, shape = len(r.content), r.json()["shape"]
                med, fwd = statistics.median(times) * 1000, statistics.median(bare[1:]) * 1000
                worst = max(worst, med)
                print(f"{layer:10s} {'x'.join(map(str, shape)):>11s} {size / 1024:8.0f} {min(times) * 1000:17.0f} "
                      f"{med:7.0f} {max(times) * 1000:7.0f} {fwd:10.0f} {med / fwd:6.2f}")
            verdict = "met" if worst < 1000 else "MISSED"
            print(f"target: a probe answers within 1 s -- {verdict} (slowest layer's median {worst:.0f} ms; "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


if __name__ == "__main__":
    main()
