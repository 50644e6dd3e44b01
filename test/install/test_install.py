"""The install, end to end.

--only destdir: `cmake --install` into a DESTDIR, the tree moved elsewhere,
then, in a private mount namespace where an empty tmpfs hides the build
tree, the installed bpfgraftd and bpfgraft run the malloc demo from the
installed sample and victim; the Python client, bash completion, man
pages, systemd unit, `bpfgraft compile` and bpfgraft-bench come from the
install too.

--only deb: `cpack -G DEB` into a temporary directory; the package's files,
Depends and unit are checked with dpkg-deb (it is not installed).

Both leave the build tree's install_manifest.txt as they found it and
remove everything they create.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import Server, check, check_eq, report, text_matches_file  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("destdir", "deb"), required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--cmake", default="cmake")
    ap.add_argument("--cpack", default="cpack")
    ap.add_argument("--prefix", required=True, help="CMAKE_INSTALL_PREFIX")
    ap.add_argument("--layout", required=True, help="BINDIR:PKGLIBDIR:LIBEXECDIR:DATADIR:MANDIR, prefix-relative")
    ap.add_argument("--inner", help=argparse.SUPPRESS)   # the relocated tree, in the namespace
    a = ap.parse_args()
    a.bindir, a.pkglibdir, a.libexecdir, a.datadir, a.mandir = a.layout.split(":")
    return a


class KeptManifest:
    """Installing writes BUILD/install_manifest.txt: put back what was there."""

    def __init__(self, build_dir):
        self.path = os.path.join(build_dir, "install_manifest.txt")

    def __enter__(self):
        try:
            with open(self.path, "rb") as f:
                self.saved = f.read()
        except FileNotFoundError:
            self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            if os.path.exists(self.path):
                os.unlink(self.path)
        else:
            with open(self.path, "wb") as f:
                f.write(self.saved)


def installed_files(a):
    """The files every install must hold, relative to the prefix."""
    files = [f"{a.bindir}/{b}" for b in ("bpfgraft", "bpfgraftd", "bpfgraft-exporter", "bpfgraft-bench",
                                         "bpfgraft-conformance")]
    if os.path.exists(os.path.join(a.build_dir, "bin", "bpfgraft-compile")):
        files.append(f"{a.bindir}/bpfgraft-compile")
    return files + [
        f"{a.pkglibdir}/bpfgraft-payload.so",
        f"{a.libexecdir}/malloc-victim",
        f"{a.datadir}/samples/malloc.bpf.o",
        f"{a.datadir}/samples/malloc.yaml",
        f"{a.mandir}/man8/bpfgraft.8",
        f"{a.mandir}/man8/bpfgraftd.8",
        f"{a.mandir}/man8/bpfgraft-exporter.8",
        "share/bash-completion/completions/bpfgraft",
        "lib/systemd/system/bpfgraftd.service",
    ]


def unit_execstart(path):
    with open(path) as f:
        return [line.strip() for line in f if line.startswith("ExecStart=")]


# ---- --only destdir -----------------------------------------------------------


def destdir(a):
    tmp = tempfile.mkdtemp(prefix="bpfgraft-install-")
    try:
        stage = os.path.join(tmp, "destdir")
        with KeptManifest(a.build_dir):
            r = subprocess.run([a.cmake, "--install", a.build_dir], env={**os.environ, "DESTDIR": stage},
                               capture_output=True, text=True, timeout=300)
        if not check_eq(r.returncode, 0, f"DESTDIR={stage} cmake --install {a.build_dir}"):
            print(r.stdout[-2000:], r.stderr[-2000:])
            return report()
        # Moved away from where it was installed for: everything must be
        # found relative to the binaries.
        root = os.path.join(tmp, "moved")
        os.rename(stage + a.prefix, root)
        shutil.rmtree(stage)
        for rel in installed_files(a):
            check(os.path.exists(os.path.join(root, rel)), f"installed: {rel}")
        check_eq(unit_execstart(os.path.join(root, "lib/systemd/system/bpfgraftd.service")),
                 [f"ExecStart={a.prefix}/{a.bindir}/bpfgraftd --foreground"], "the unit starts the installed bpfgraftd")
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, __file__] + sys.argv[1:]
                           + ["--inner", root], timeout=600)
        check_eq(r.returncode, 0, "the installed tree, on its own (above)")
        return report()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def hide_build_tree(build_dir):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=4k", "bpfgraft-hidden", build_dir], check=True)
    return check_eq(os.listdir(build_dir), [], f"the build tree {build_dir} is hidden")


def demo(srv, root, a):
    """The malloc demo with the installed sample and victim."""
    victim = subprocess.Popen([os.path.join(root, a.libexecdir, "malloc-victim")], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        rc, out, err = srv.cli("load", os.path.join(root, a.datadir, "samples", "malloc.bpf.o"))
        check_eq(rc, 0, f"load the installed malloc.bpf.o ({err.strip()})")
        rc, _, err = srv.cli("attach", victim.pid, "malloc")
        check_eq(rc, 0, f"attach to the installed malloc-victim {victim.pid} ({err.strip()})")
        time.sleep(1.0)
        rc, doc, _ = srv.cli_json("map", "dump", "malloc_calls")
        calls = {e["formatted"]["key"]: e["formatted"]["value"] for e in (doc or {}).get("entries", [])}
        check(calls.get(victim.pid, 0) > 0, f"malloc_calls counted the victim ({calls.get(victim.pid)})", repr(doc)[:300])
        client_from_install(srv, root)
        completion(srv, root, victim.pid)
        rc, _, err = srv.cli("detach", victim.pid)
        check_eq(rc, 0, f"detach ({err.strip()})")
        time.sleep(0.3)
        check(victim.poll() is None, "the victim still runs after detach")
        check_eq(text_matches_file(victim.pid), [], "its code is back to the file's bytes")
    finally:
        victim.kill()
        victim.wait()


def client_from_install(srv, root):
    paths = glob.glob(os.path.join(root, "lib", "python3*", "dist-packages", "bpfgraft_client.py"))
    if not check_eq(len(paths), 1, f"one installed bpfgraft_client.py ({paths})"):
        return
    code = ("import sys, bpfgraft_client as b; print(b.__file__); "
            "print(' '.join(m['name'] for m in b.Client(sys.argv[1]).call('map.list')))")
    r = subprocess.run([sys.executable, "-c", code, srv.socket], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "PYTHONPATH": os.path.dirname(paths[0])}, cwd="/")
    lines = r.stdout.splitlines()
    check(r.returncode == 0 and lines[:1] == [paths[0]] and "malloc_calls" in lines[-1],
          "python3 imports the installed bpfgraft_client and lists the maps", r.stdout + r.stderr)


def complete(root, words):
    """COMPREPLY of the installed completion for the command line words."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
              '_bpfgraft; printf "%s\\n" "${COMPREPLY[@]}"')
    r = subprocess.run(["bash", "-c", script, "complete", os.path.join(root, "share/bash-completion/completions/bpfgraft")]
                       + words, capture_output=True, text=True, timeout=30)
    return set(r.stdout.split())


def completion(srv, root, pid):
    cli = os.path.join(root, "bin", "bpfgraft")
    check_eq(complete(root, [cli, "det"]), {"detach"}, "completion: a command")
    check_eq(complete(root, [cli, "map", "d"]), {"dump", "delete"}, "completion: a subcommand")
    check_eq(complete(root, [cli, "--socket", srv.socket, "map", "dump", ""]), {"malloc_calls", "malloc_bytes"},
             "completion: map names from the server")
    check_eq(complete(root, [cli, "--socket", srv.socket, "detach", ""]), {str(pid)},
             "completion: attached pids from the server")


def inner(a):
    root = a.inner
    if not hide_build_tree(a.build_dir):
        return report()
    with Server(argparse.Namespace(bin_dir=os.path.join(root, a.bindir))) as srv:
        demo(srv, root, a)
        if os.path.exists(os.path.join(root, a.bindir, "bpfgraft-compile")):
            out = os.path.join(srv.dir, "malloc.jit")
            rc, _, err = srv.cli("compile", os.path.join(root, a.datadir, "samples", "malloc.bpf.o"), "-o", out,
                                 timeout=120)
            check(rc == 0 and os.path.getsize(out) > 0, f"bpfgraft compile runs the installed bpfgraft-compile ({err.strip()})")
    r = subprocess.run([os.path.join(root, a.bindir, "bpfgraft-bench"), "--quick", "vm", "verifier", "rpc", "uprobe"],
                       capture_output=True, text=True, timeout=300)
    check(r.returncode == 0 and "uprobe" in r.stdout, "bpfgraft-bench --quick vm verifier rpc uprobe from the install",
          r.stderr[-2000:])
    for page in ("bpfgraft", "bpfgraftd", "bpfgraft-exporter"):
        r = subprocess.run(["man", "--warnings", "-l", os.path.join(root, a.mandir, "man8", page + ".8")],
                           capture_output=True, text=True, timeout=60, env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"})
        check(r.returncode == 0 and not r.stderr and "SYNOPSIS" in r.stdout, f"man -l {page}.8 renders cleanly",
              r.stderr[-1000:])
    return report()


# ---- --only deb ------------------------------------------------------------------

DEB_DEPENDS = ("libbpf1", "libelf1", "libmsgpackc2", "libunwind8", "libyaml-0-2", "libzydis4.0", "python3-msgpack")


def deb(a):
    tmp = tempfile.mkdtemp(prefix="bpfgraft-deb-")
    try:
        with KeptManifest(a.build_dir):
            r = subprocess.run([a.cpack, "-G", "DEB", "-B", tmp], cwd=a.build_dir, capture_output=True, text=True,
                               timeout=600)
        debs = glob.glob(os.path.join(tmp, "bpfgraft_*_amd64.deb"))
        if not check(r.returncode == 0 and len(debs) == 1, f"cpack -G DEB makes one package ({debs})",
                     r.stdout[-2000:] + r.stderr[-2000:]):
            return report()
        listing = subprocess.run(["dpkg-deb", "-c", debs[0]], capture_output=True, text=True, check=True).stdout
        paths = {line.split()[-1] for line in listing.splitlines()}
        for rel in installed_files(a) + ["lib/python3/dist-packages/bpfgraft_client.py"]:
            check(f"./usr/{rel}" in paths, f"the package holds /usr/{rel}")
        check_eq([p for p in paths if "/local/" in p or a.build_dir in p], [], "nothing outside /usr's layout")
        depends = subprocess.run(["dpkg-deb", "-f", debs[0], "Depends"], capture_output=True, text=True).stdout
        names = {d.split()[0] for d in depends.replace("|", ",").split(",") if d.strip()}
        with_llvm = os.path.exists(os.path.join(a.build_dir, "bin", "bpfgraft-compile"))
        for dep in DEB_DEPENDS + (("libllvm14",) if with_llvm else ()):
            check(dep in names, f"Depends names {dep}", depends)
        x = os.path.join(tmp, "x")
        subprocess.run(["dpkg-deb", "-x", debs[0], x], check=True)
        check_eq(unit_execstart(os.path.join(x, "usr/lib/systemd/system/bpfgraftd.service")),
                 ["ExecStart=/usr/bin/bpfgraftd --foreground"], "the package's unit starts /usr/bin/bpfgraftd")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report()


def main():
    a = parse_args()
    a.build_dir = os.path.abspath(a.build_dir)
    if a.inner:
        return inner(a)
    return destdir(a) if a.only == "destdir" else deb(a)


if __name__ == "__main__":
    sys.exit(main())
