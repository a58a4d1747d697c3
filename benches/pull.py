#!/usr/bin/env python3
"""A registry client that pulls whole images and checks every byte, as a container
runtime does: the manifest by tag, then the config and the layers, each hashed (SHA-256)
and compared with its digest. Used by benches/cold.sh; standard library only.

    pull.py push REGISTRY IMAGES LAYERS LAYER_BYTES   # random images bench/img-N:v1
    pull.py pull BASE IMAGES THREADS                  # prints the seconds taken
"""
import hashlib
import json
import os
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join([
    OCI_MANIFEST,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


def push_blob(registry: str, repo: str, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"http://{registry}/v2/{repo}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(req) as r:
        loc = r.headers["Location"]
    if not loc.startswith("http"):
        loc = f"http://{registry}{loc}"
    sep = "&" if "?" in loc else "?"
    req = urllib.request.Request(f"{loc}{sep}digest={digest}", data=data, method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req).close()
    return {"digest": digest, "size": len(data)}


def push(registry: str, images: int, layers: int, layer_bytes: int) -> None:
    for i in range(images):
        repo = f"bench/img-{i}"
        config = push_blob(registry, repo, json.dumps({"architecture": "amd64", "os": "linux", "n": i}).encode())
        config["mediaType"] = "application/vnd.oci.image.config.v1+json"
        descs = []
        for _ in range(layers):
            d = push_blob(registry, repo, os.urandom(layer_bytes))
            d["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
            descs.append(d)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": descs}).encode()
        req = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/v1", data=manifest, method="PUT",
                                     headers={"Content-Type": OCI_MANIFEST})
        urllib.request.urlopen(req).close()


def fetch_checked(url: str, digest: str, accept: str = "") -> bytes:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    h = hashlib.sha256()
    first = b""
    with urllib.request.urlopen(req) as r:
        while chunk := r.read(1 << 20):
            h.update(chunk)
            if len(first) < (4 << 20):
                first += chunk
    if digest and "sha256:" + h.hexdigest() != digest:
        raise SystemExit(f"{url}: bytes do not match {digest}")
    return first


def pull_image(base: str, i: int) -> int:
    repo = f"bench/img-{i}"
    manifest = json.loads(fetch_checked(f"{base}/v2/{repo}/manifests/v1", "", ACCEPT))
    total = 0
    for d in [manifest["config"], *manifest["layers"]]:
        fetch_checked(f"{base}/v2/{repo}/blobs/{d['digest']}", d["digest"])
        total += d["size"]
    return total


def pull(base: str, images: int, threads: int) -> None:
    start = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda i: pull_image(base, i), range(images)))
    print(f"{time.monotonic() - start:.3f} {total}")


if __name__ == "__main__":
    if sys.argv[1] == "push":
        push(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        pull(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
