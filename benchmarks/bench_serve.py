"""Latency of the probe server's POST /api/probe for EfficientNet-Lite0, over real HTTP.

    python benchmarks/bench_serve.py [--requests 15] [--layers blocks.2,blocks.4,blocks.6,conv_stem]

Starts the app once (the model is built once, at start) under uvicorn on 127.0.0.1, sends
scikit-image's `chelsea` (451x300 JPEG) as a multipart upload, and prints per layer the median and
the slowest request time, the bare forward pass (alternated with the requests) and the ratio. Target: a probe
answers within 1 s on a CPU.
"""

from __future__ import annotations

import argparse
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
            print(f"{'layer':12s} {'maps':>12s} {'reply kB':>9s} {'median ms':>10s} {'max ms':>8s} {'forward ms':>10s} {'ratio':>6s}")
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
                med, bare_ms = statistics.median(times) * 1000, statistics.median(bare[1:]) * 1000
                print(f"{layer:12s} {'x'.join(map(str, shape)):>12s} {size / 1024:9.0f} {med:10.0f} "
                      f"{max(times) * 1000:8.0f} {bare_ms:10.0f} {med / bare_ms:6.2f}")
                assert max(times) < 1.0, f"a probe of {layer} took {max(times):.2f} s (target: under 1 s)"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


if __name__ == "__main__":
    main()
