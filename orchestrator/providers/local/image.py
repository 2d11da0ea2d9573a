"""The base image of local nodes: Debian 12 with sshd, python3 and sudo.

``ensure_image`` makes sure the image exists, in this order: it is already there; it
can be pulled (``pull``, e.g. ``docker.io/library/debian:bookworm``, then tagged;
sshd is installed at container start when missing); it is built from scratch with
``debootstrap`` (one to two minutes, once per machine) and ``podman import``. Builds are
serialised by a file lock, so two processes never debootstrap at the same time.

``python -m orchestrator.providers.local [NAME] [--pull REF]`` builds it on
the command line, printing progress; exit status 0 when the image exists.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager

from orchestrator.providers.base import ProviderError
from orchestrator.providers.local.runtime import Runtime, tail

DEFAULT_IMAGE = "localhost/orchestrator-node:bookworm"
SUITE = "bookworm"
PACKAGES = ("openssh-server", "python3", "sudo", "iproute2", "procps", "ca-certificates")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CMD = '["/usr/sbin/sshd","-D","-e"]'

Progress = Callable[[str], None]


def data_dir() -> str:
    """Where the local provider keeps its files (locks)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".local", "share")
    path = os.path.join(base, "orchestrator", "local")
    os.makedirs(path, exist_ok=True)
    return path


@contextmanager
def _build_lock(name: str):
    safe = "".join(c if c.isalnum() else "_" for c in name)
    with open(os.path.join(data_dir(), f"image-{safe}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def image_exists(runtime: Runtime, name: str = DEFAULT_IMAGE) -> bool:
    return runtime.exists("image", name)


def can_build() -> str | None:
    """None when debootstrap and tar are available, else why not."""
    missing = [tool for tool in ("debootstrap", "tar") if not shutil.which(tool)]
    if missing:
        return f"{' and '.join(missing)} not installed"
    if os.geteuid() != 0:
        return "debootstrap needs root"
    return None


def ensure_image(name: str = DEFAULT_IMAGE, progress: Progress | None = None,
                 runtime: Runtime | None = None, pull: str | None = None,
                 mirror: str | None = None) -> str:
    """Make sure image ``name`` exists (pull, else debootstrap); returns ``name``."""
    say = progress or (lambda line: None)
    runtime = runtime or Runtime()
    if image_exists(runtime, name):
        return name
    with _build_lock(name):
        if image_exists(runtime, name):  # another process built it while we waited
            say(f"image {name} was built by another process")
            return name
        if pull and _pull(runtime, pull, name, say):
            return name
        why = can_build()
        if why:
            raise ProviderError(f"image {name} is missing and cannot be built: {why}"
                                + (f" (and {pull} could not be pulled)" if pull else ""))
        _debootstrap_import(runtime, name, say, mirror)
    return name


def _pull(runtime: Runtime, ref: str, name: str, say: Progress) -> bool:
    say(f"pulling {ref}")
    done = runtime.run(["pull", "-q", ref], check=False, timeout=600)
    if done.returncode != 0:
        say(f"cannot pull {ref}: {tail(done.stderr, 1)}; building {name} with debootstrap")
        return False
    runtime.run(["tag", ref, name])
    say(f"pulled {ref} as {name}")
    return True


def _debootstrap_import(runtime: Runtime, name: str, say: Progress,
                        mirror: str | None) -> None:
    started = time.monotonic()
    root_parent = tempfile.mkdtemp(prefix="orchestrator-rootfs-", dir=data_dir())
    root = os.path.join(root_parent, "rootfs")
    try:
        say(f"building {name} with debootstrap {SUITE} (one to two minutes, once per machine)")
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
               SUITE, root] + ([mirror] if mirror else [])
        _run_streaming(cmd, say)
        # host keys are made at container start, never baked into the image
        for entry in os.listdir(os.path.join(root, "etc", "ssh")):
            if entry.startswith("ssh_host_"):
                os.remove(os.path.join(root, "etc", "ssh", entry))
        shutil.rmtree(os.path.join(root, "var", "cache", "apt", "archives"), ignore_errors=True)
        os.makedirs(os.path.join(root, "var", "cache", "apt", "archives", "partial"),
                    exist_ok=True)
        say(f"importing the root file system as {name} ({time.monotonic() - started:.0f} s)")
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        try:
            runtime.run(["import", "--change", f"ENV {PATH_ENV}", "--change", f"CMD {CMD}",
                         "-", name], stdin=tar.stdout, timeout=900)
        finally:
            tar.stdout.close()
            tar.wait()
        say(f"built {name} in {time.monotonic() - started:.0f} s")
    finally:
        shutil.rmtree(root_parent, ignore_errors=True)


_PHASES = {"Retrieving": "downloading packages", "Validating": "checking packages",
           "Extracting": "extracting packages", "Unpacking": "unpacking packages",
           "Configuring": "configuring packages", "Resolving": "resolving dependencies",
           "Installing": "installing the core system"}
_NOT_A_PACKAGE = {"required", "base", "the", "core", "dependencies", "InRelease", "Release",
                  "Packages"}
_HEARTBEAT_S = 10.0


def _run_streaming(cmd: list[str], say: Progress) -> None:
    """Run debootstrap, telling ``say`` which phase it is in (downloading, unpacking...),
    with a count of the packages done, at each change of phase and at least every ten
    seconds within a long one; errors and warnings are passed on as they come."""
    lines: list[str] = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
    except OSError as exc:
        raise ProviderError(f"`{' '.join(cmd)}` could not start: {exc}") from None
    with proc, proc.stdout:
        started = last = time.monotonic()
        phase, done = "", 0
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if line.startswith(("E:", "W:")):
                say(line)
                continue
            words = line.split()
            if len(words) < 2 or words[0] != "I:":
                continue
            now = time.monotonic()
            current = _PHASES.get(words[1], phase)
            if current != phase:
                phase, done, last = current, 0, now
                say(f"debootstrap: {phase}... ({now - started:.0f} s)")
            elif words[1] in _PHASES and len(words) > 2 and words[2] not in _NOT_A_PACKAGE:
                done += 1  # "I: Retrieving libc6 2.36-9", "I: Unpacking bash..."
                if now - last >= _HEARTBEAT_S:
                    last = now
                    say(f"debootstrap: {phase}, {done} so far ({now - started:.0f} s)")
    if proc.wait() != 0:
        raise ProviderError(f"`{' '.join(cmd[:3])} ...` failed (exit {proc.returncode}): "
                            + "\n".join(lines[-8:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.providers.local",
                                     description="Build the local provider's base image.")
    parser.add_argument("name", nargs="?", default=DEFAULT_IMAGE)
    parser.add_argument("--pull", help="try pulling this image first")
    parser.add_argument("--engine", help="podman or docker (default: detect)")
    args = parser.parse_args(argv)
    try:
        ensure_image(args.name, progress=lambda line: print(line, flush=True),
                     runtime=Runtime(args.engine), pull=args.pull)
    except ProviderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"image {args.name} is ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
