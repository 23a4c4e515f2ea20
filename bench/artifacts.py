"""A large artifact round trip: streaming PUT, then streaming GET verified by size and sha256.

Neither side holds the artifact in memory: the body is generated chunk by chunk (a random block
stamped with the chunk number, so a reordered or duplicated chunk changes the hash) and the
download is hashed as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.stack import read_proc_status_kib

CHUNK = 1024 * 1024
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
TRANSFER_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=180)
RSS_SAMPLE_SECONDS = 0.2


@dataclass(frozen=True)
class Payload:
    size: int
    block: bytes

    @classmethod
    def random(cls, size: int) -> Payload:
        if size % CHUNK:
            raise ValueError(f"artifact size must be a multiple of {CHUNK} bytes")
        return cls(size, os.urandom(CHUNK))

    def chunks(self) -> Iterator[bytes]:
        for index in range(self.size // CHUNK):
            yield struct.pack(">Q", index) + self.block[8:]

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()


@dataclass
class RoundTrip:
    via: str
    size: int
    upload_seconds: float
    download_seconds: float
    upload_status: int
    download_status: int
    downloaded_bytes: int
    sha256_ok: bool

    @property
    def ok(self) -> bool:
        return self.upload_status == 200 and self.download_status == 200 and self.sha256_ok

    @property
    def upload_mb_s(self) -> float:
        return self.size / self.upload_seconds / 1e6

    @property
    def download_mb_s(self) -> float:
        return self.downloaded_bytes / self.download_seconds / 1e6


async def _body(payload: Payload) -> AsyncIterator[bytes]:
    for chunk in payload.chunks():
        yield chunk


async def _upload(
    session: aiohttp.ClientSession, url: str, payload: Payload, auth: dict[str, str]
) -> tuple[int, float]:
    # An explicit Content-Length, as the mlflow client sends for a file, instead of chunked.
    headers = {"Content-Length": str(payload.size), "Content-Type": "application/octet-stream"}
    headers.update(auth)
    started = time.perf_counter()
    async with session.put(url, data=_body(payload), headers=headers) as resp:
        await resp.read()
        return resp.status, time.perf_counter() - started


async def _download(
    session: aiohttp.ClientSession, url: str, auth: dict[str, str]
) -> tuple[int, int, str, float]:
    digest = hashlib.sha256()
    size = 0
    started = time.perf_counter()
    async with session.get(url, headers=auth) as resp:
        async for chunk in resp.content.iter_chunked(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        return resp.status, size, digest.hexdigest(), time.perf_counter() - started


async def round_trip(
    via: str,
    base_url: str,
    auth: dict[str, str],
    payload: Payload,
    expected_sha256: str,
    artifacts_dir: Path,
) -> RoundTrip:
    """Upload then download one artifact through `base_url`; delete it from disk afterwards."""
    # Under experiment 0: artifact paths start with the id of the experiment they belong to.
    folder = f"0/bench-{via}-{uuid.uuid4().hex[:8]}"
    url = f"{base_url}{ARTIFACTS_API}/{folder}/blob.bin"
    try:
        # Fresh connections for each direction: the transfer, not connection reuse, is measured.
        async with aiohttp.ClientSession(timeout=TRANSFER_TIMEOUT) as session:
            up_status, up_seconds = await _upload(session, url, payload, auth)
        async with aiohttp.ClientSession(timeout=TRANSFER_TIMEOUT) as session:
            down_status, size, sha, down_seconds = await _download(session, url, auth)
    finally:
        shutil.rmtree(artifacts_dir / folder, ignore_errors=True)
    return RoundTrip(
        via=via,
        size=payload.size,
        upload_seconds=up_seconds,
        download_seconds=down_seconds,
        upload_status=up_status,
        download_status=down_status,
        downloaded_bytes=size,
        sha256_ok=size == payload.size and sha == expected_sha256,
    )


def _reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so it measures from now on."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class MemoryWatch:
    """VmHWM is the kernel's own peak; the sampled VmRSS maximum is a cross-check.

    The gateway's start-up has its own peak (hashing the bootstrap admin's password with argon2
    takes 64 MiB for a moment), so VmHWM is reset when the watch starts: what is left is the peak
    of the transfers. The start-up peak is kept too.
    """

    pid: int
    startup_hwm_kib: int = 0
    hwm_reset: bool = False
    baseline_rss_kib: int = 0
    sampled_max_rss_kib: int = 0
    peak_hwm_kib: int = 0

    async def sample_until(self, done: asyncio.Event) -> None:
        self.startup_hwm_kib = read_proc_status_kib(self.pid, "VmHWM")
        self.hwm_reset = _reset_peak_rss(self.pid)
        self.baseline_rss_kib = read_proc_status_kib(self.pid, "VmRSS")
        while not done.is_set():
            rss = read_proc_status_kib(self.pid, "VmRSS")
            self.sampled_max_rss_kib = max(self.sampled_max_rss_kib, rss)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), RSS_SAMPLE_SECONDS)
        self.peak_hwm_kib = read_proc_status_kib(self.pid, "VmHWM")


@contextlib.asynccontextmanager
async def watching_memory(pid: int) -> AsyncIterator[MemoryWatch]:
    watch = MemoryWatch(pid)
    done = asyncio.Event()
    sampler = asyncio.create_task(watch.sample_until(done))
    try:
        yield watch
    finally:
        done.set()
        await sampler


def abba_order(first: str, second: str, repetitions: int) -> list[str]:
    """A B B A …: a drift over time (page cache, writeback, other load) hits both paths alike."""
    order: list[str] = []
    for rep in range(repetitions):
        order += [first, second] if rep % 2 == 0 else [second, first]
    return order
