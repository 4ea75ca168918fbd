#!/usr/bin/env python3
"""Writes the committed seed inputs under fuzz/seeds/<target>/ (run from anywhere; stdlib only,
plus the `zstd` CLI for the zstd layer seed if it is installed). The seeds are small valid (and a
few hostile) inputs that get libFuzzer past the formats' headers quickly."""
import gzip, io, json, os, shutil, subprocess, tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tar(entries, fmt=tarfile.USTAR_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.type = e.get("type", tarfile.REGTYPE)
            ti.mode = e.get("mode", 0o755 if ti.type == tarfile.DIRTYPE else 0o644)
            ti.mtime = 1700000000
            ti.linkname = e.get("link", "")
            ti.pax_headers = e.get("pax", {})
            data = e.get("data", b"")
            ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


D, F, L, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE

# layer_tar: first byte 0 = plain tar, 1 = gzip, 2 = zstd
simple = tar([
    {"name": "./", "type": D},
    {"name": "etc/", "type": D},
    {"name": "etc/hello", "data": b"hi\n"},
    {"name": "bin/", "type": D},
    {"name": "bin/sh", "data": b"\x7fELF", "mode": 0o4755},
    {"name": "bin/ln", "type": L, "link": "sh"},
    {"name": "bin/hard", "type": H, "link": "bin/sh"},
])
put("layer_tar", "simple.tar", b"\0" + simple)
put("layer_tar", "simple.tar.gz", b"\1" + gzip.compress(simple, mtime=0))
if shutil.which("zstd"):
    z = subprocess.run(["zstd", "-q", "-c", "-19"], input=simple, capture_output=True, check=True)
    put("layer_tar", "simple.tar.zst", b"\2" + z.stdout)
put("layer_tar", "whiteouts.tar", b"\0" + tar([
    {"name": "etc/", "type": D},
    {"name": "etc/.wh.hello", "data": b""},
    {"name": "usr/", "type": D},
    {"name": "usr/.wh..wh..opq", "data": b""},
]))
put("layer_tar", "pax-xattr-longname.tar", b"\0" + tar([
    {"name": "d/", "type": D, "pax": {"SCHILY.xattr.user.k": "v"}},
    {"name": "d/" + "x" * 150, "data": b"long", "pax": {"SCHILY.xattr.security.capability": "\x01"}},
], fmt=tarfile.PAX_FORMAT))
put("layer_tar", "gnu-longlink.tar", b"\0" + tar([
    {"name": "l" * 120, "type": L, "link": "t" * 130},
], fmt=tarfile.GNU_FORMAT))
# hostile: each must be rejected or confined to dest
put("layer_tar", "dotdot.tar", b"\0" + tar([{"name": "../sentinel", "data": b"pwned"}]))
put("layer_tar", "symlink-then-write.tar", b"\0" + tar([
    {"name": "up", "type": L, "link": ".."},
    {"name": "up/sentinel", "data": b"pwned"},
    {"name": "sib", "type": L, "link": "../sibling"},
    {"name": "sib/file", "data": b"pwned"},
]))
put("layer_tar", "hardlink-out.tar", b"\0" + tar([
    {"name": "h", "type": H, "link": "../sentinel"},
    {"name": "h", "data": b"pwned"},
]))
put("layer_tar", "dir-over-symlink.tar", b"\0" + tar([
    {"name": "a", "type": L, "link": "../sibling"},
    {"name": "a/", "type": D, "mode": 0o777},
]))

# image_reference
for i, s in enumerate([
    "busybox", "docker.io/library/busybox:1.36", "ghcr.io/o/r@sha256:" + "a" * 64,
    "127.0.0.1:5000/test/img:v1", "localhost/a__b-c.d:tag_1@sha256:" + "0" * 64,
    "[::1]:5000/x/y", "index.docker.io/foo",
]):
    put("image_reference", f"ref{i}", s)

# manifest_document: first byte picks the Content-Type (see the target)
desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": "sha256:" + "b" * 64, "size": 32, "annotations": {"a": "b"}}
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": "sha256:" + "c" * 64, "size": 10},
            "layers": [desc]}
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": "sha256:" + "d" * 64, "size": 400,
                        "platform": {"architecture": "amd64", "os": "linux", "variant": "v8"}}]}
config = {"architecture": "wasm", "os": "wasip1",
          "config": {"Entrypoint": ["/app.wasm"], "Env": ["A=1"], "WorkingDir": "/",
                     "User": "1000:1000", "Labels": {"x": "y"}},
          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "e" * 64]}}
put("manifest_document", "manifest", b"\4" + json.dumps(manifest).encode())
put("manifest_document", "index", b"\1" + json.dumps(index).encode())
put("manifest_document", "umoci-index-no-mediatype",
    b"\4" + json.dumps({k: v for k, v in index.items() if k != "mediaType"}).encode())
put("manifest_document", "config", b"\4" + json.dumps(config).encode())
put("manifest_document", "schema1", b"\4" + b'{"schemaVersion":1,"fsLayers":[]}')

# bundle_spec: a runtime-spec config.json and a process.json
spec = {"ociVersion": "1.2.0",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0, "additionalGids": [1]},
                    "args": ["sh"], "env": ["PATH=/bin"], "cwd": "/",
                    "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": True}, "hostname": "pouch",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}],
        "annotations": {"run.oci.handler": "wasm"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}],
                  "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                  "resources": {"devices": [{"allow": False, "access": "rwm"}],
                                "memory": {"limit": 1048576}, "pids": {"limit": 10}},
                  "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                              "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]},
                  "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]}}
put("bundle_spec", "config.json", json.dumps(spec))
put("bundle_spec", "process.json", json.dumps(spec["process"]))

# dispatch_sniff: [annotations selector, args[0] selector, content...]
for i, (a, b, c) in enumerate([
    (0, 0, b"\0asm\x01\0\0\0"), (1, 0, b"\0asm\x0d\0\x01\0"), (0, 2, b"\x7fELF\x02\x01\x01\0"),
    (3, 3, b"#!/bin/sh\n"), (0, 1, b"  (module)"), (5, 10, b"\0asm\x01\0\0\0"), (6, 7, b""),
]):
    put("dispatch_sniff", f"seed{i}", bytes([a, b]) + c)

# template
for i, s in enumerate([
    "{{.Name}}", "{{json .Config}}\\t{{lower .State.Status}}", "{{upper .config.labels.k}}\\n",
    "ID {{ .ID }} {{.Mounts}} {{.Size}}", "{{json .}}", "{{.}}",
]):
    put("template", f"t{i}", s)
