"""Blob throughput through ``fulmen server``: a blob store in the data folder against an
S3-compatible object store (moto's S3 server on loopback), side by side in one run (issue 17).

Three ``fulmen server`` processes on loopback, all fed the same way (a run file PUT in 1 MiB
chunks, chunked transfer encoding, then read back in 1 MiB reads):

- ``local``: blobs in the data folder (the default);
- ``s3``: ``--blobs s3://bench/blobs`` on moto (multipart uploads of 8 MiB parts, downloads
  streamed through the server);
- ``s3-presigned``: the same with ``--blobs-presign 300``: a download is a 307 to a presigned URL
  that the client then fetches from moto itself.

Plus ``boto3 -> moto``: the same bytes put straight into moto with boto3 (``upload_fileobj``, no
fulmen), what the object store itself costs here. Each upload sends new bytes (a blob already
stored would only be hashed). moto is an in-memory Python server: the S3 figures measure fulmen's
path plus moto, not a real object store; every process shares the machine's cores.

    python benchmarks/bench_blobs.py [--repeats 5] [--mib 64]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import RESULTS_DIR, Case, compare
from tests.server.runlogs import LogWriter
from tests.server.s3 import MotoServer, free_port

HEADERS = {"X-Fulmen-Client": "bench", "Content-Type": "application/octet-stream"}
RUN = "/api/v1/entities/local/projects/bench/runs/r1"
BUCKET = "fulmen-tests"  # the bucket MotoServer makes
MIB = 1 << 20


def chunks(mib: int, seed: int) -> Iterator[bytes]:
    block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
    for i in range(mib):
        yield i.to_bytes(4, "big") + block[4:]


def digest_of(mib: int, seed: int) -> str:
    h = hashlib.sha256()
    for c in chunks(mib, seed):
        h.update(c)
    return h.hexdigest()


class Server:
    def __init__(self, work: Path, name: str, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "fulmen", "server", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*cmd, "--data", str(work / name), *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(work / f"{name}.log").open("wb"),
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "/api/v1/health", timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: the server did not start") from None
                time.sleep(0.1)
        w = LogWriter()
        w.run("r1", "bench")
        status, _ = self.request("POST", RUN + "/records", w.body())
        assert status == 200

    def request(
        self, method: str, path: str, body: object = None
    ) -> tuple[int, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request(method, path, body=body, headers=HEADERS, encode_chunked=body is not None
                     and not isinstance(body, bytes))  # fmt: skip
        answer = conn.getresponse()
        return answer.status, answer

    def upload(self, name: str, mib: int, seed: int, digest: str) -> float:
        start = time.perf_counter()
        status, answer = self.request(
            "PUT", f"{RUN}/files/{name}?digest={digest}", chunks(mib, seed)
        )
        answer.read()
        took = time.perf_counter() - start
        assert status == 200, status
        return took

    def download(self, name: str) -> tuple[float, int]:
        """(seconds, bytes read); a redirect is followed to the object store, timed too."""
        start = time.perf_counter()
        status, answer = self.request("GET", f"{RUN}/files/{name}")
        if status == 307:
            location = answer.getheader("location") or ""
            answer.read()
            parts = urllib.parse.urlsplit(location)
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=600)
            conn.request("GET", f"{parts.path}?{parts.query}")
            answer = conn.getresponse()
            status = answer.status
        assert status == 200, status
        size = 0
        while block := answer.read(MIB):
            size += len(block)
        return time.perf_counter() - start, size

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def make_cases(servers: dict[str, Server], moto: MotoServer, mib: int) -> list[Case]:
    seeds = iter(range(10**6))
    s3 = moto.client()

    def upload_case(server: Server) -> Callable[[], float]:
        def run() -> float:
            seed = next(seeds)
            return server.upload(f"up-{seed}.bin", mib, seed, digest_of(mib, seed))

        return run

    def direct_upload() -> float:
        seed = next(seeds)
        body = io.BytesIO(b"".join(chunks(mib, seed)))
        start = time.perf_counter()
        s3.upload_fileobj(body, BUCKET, f"direct/{seed}")
        return time.perf_counter() - start

    def download_case(server: Server) -> Callable[[], float]:
        seed = next(seeds)
        server.upload("down.bin", mib, seed, digest_of(mib, seed))

        def run() -> float:
            took, size = server.download("down.bin")
            assert size == mib * MIB
            return took

        return run

    first_direct = next(seeds)
    s3.upload_fileobj(io.BytesIO(b"".join(chunks(mib, first_direct))), BUCKET,
                      f"direct/{first_direct}")  # fmt: skip

    def direct_download() -> float:
        start = time.perf_counter()
        body = s3.get_object(Bucket=BUCKET, Key=f"direct/{first_direct}")["Body"]
        size = sum(len(c) for c in body.iter_chunks(MIB))
        assert size == mib * MIB
        return time.perf_counter() - start

    down = "download, local folder"
    return [
        Case("upload, local folder", upload_case(servers["local"])),
        Case("upload, S3 (moto)", upload_case(servers["s3"])),
        Case("upload, boto3 -> moto (no fulmen)", direct_upload),
        Case(down, download_case(servers["local"]), baseline=down),
        Case("download, S3 (moto), streamed", download_case(servers["s3"]), baseline=down),
        Case("download, S3 (moto), presigned redirect", download_case(servers["s3-presigned"]),
             baseline=down),
        Case("download, boto3 <- moto (no fulmen)", direct_download, baseline=down),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--mib", type=int, default=64, help="size of each blob, MiB")
    args = parser.parse_args()
    mib = args.mib
    work = Path(tempfile.mkdtemp(prefix="fulmen-bench-blobs-"))
    moto = MotoServer(work / "moto.log")
    moto.start()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("FULMEN_", "AWS_"))}
    s3_env = {**base_env, **moto.env()}
    servers: dict[str, Server] = {}
    try:
        servers["local"] = Server(work, "local", base_env)
        servers["s3"] = Server(work, "s3", s3_env, "--blobs", f"s3://{BUCKET}/blobs")
        servers["s3-presigned"] = Server(
            work, "s3p", s3_env, "--blobs", f"s3://{BUCKET}/blobs-p", "--blobs-presign", "300"
        )
        cases = make_cases(servers, moto, mib)
        report = compare(
            f"blob throughput, {mib} MiB per blob",
            cases,
            baseline="upload, local folder",
            repeats=args.repeats,
            warmup=args.warmup,
        )
    finally:
        for server in servers.values():
            server.stop()
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(report.to_table())
    print()
    rates: dict[str, float] = {}
    for result in report.results:
        if result.median:
            rates[result.name] = mib / result.median
            print(f"- {result.name}: {rates[result.name]:,.0f} MiB/s")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = {**report.to_json(), "mib_per_s": rates, "mib": mib}
    (RESULTS_DIR / "bench_blobs.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
