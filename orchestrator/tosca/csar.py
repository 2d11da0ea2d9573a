"""CSAR archives: a zip with TOSCA-Metadata/TOSCA.meta (Entry-Definitions) or one
top-level YAML file. The archive is extracted into a temporary directory that is
removed as soon as its files have been read."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from pathlib import PurePosixPath
from typing import Iterator

from orchestrator.diagnostics import Diagnostics, Location

MAX_UNPACKED_BYTES = 200 * 1024 * 1024
MAX_MEMBERS = 10_000  # files and folders; a template with its playbooks has a few hundred


def is_csar(path: str) -> bool:
    if path.lower().endswith((".csar", ".zip")):
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _entry_definitions(archive: zipfile.ZipFile, name: str, diags: Diagnostics) -> str | None:
    names = archive.namelist()
    if "TOSCA-Metadata/TOSCA.meta" in names:
        text = archive.read("TOSCA-Metadata/TOSCA.meta").decode("utf-8", "replace")
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Entry-Definitions" and value.strip():
                entry = value.strip()
                if entry not in names:
                    diags.error("invalid-csar", f"Entry-Definitions '{entry}' is not in the "
                                "archive", Location(name))
                    return None
                return entry
        diags.error("invalid-csar", "TOSCA-Metadata/TOSCA.meta has no Entry-Definitions",
                    Location(name))
        return None
    top = [n for n in names if "/" not in n.strip("/") and n.endswith((".yaml", ".yml"))]
    if len(top) == 1:
        return top[0]
    diags.error("invalid-csar", "the archive has no TOSCA-Metadata/TOSCA.meta and not exactly "
                f"one top-level YAML file (found {len(top)})", Location(name))
    return None


@contextlib.contextmanager
def extracted(path: str, diags: Diagnostics) -> Iterator[tuple[str, str] | None]:
    """Yield (temporary root, entry template path) or None; always cleans up."""
    tmp = tempfile.mkdtemp(prefix="orchestrator-csar-")
    try:
        try:
            archive = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as exc:
            diags.error("invalid-csar", f"cannot open archive: {exc}", Location(path))
            yield None
            return
        with archive:
            if len(archive.infolist()) > MAX_MEMBERS:
                diags.error("invalid-csar", f"the archive has {len(archive.infolist())} "
                            f"members, more than {MAX_MEMBERS}", Location(path))
                yield None
                return
            total = 0
            for info in archive.infolist():
                target = PurePosixPath(info.filename)
                if target.is_absolute() or ".." in target.parts:
                    diags.error("invalid-csar", f"archive member '{info.filename}' escapes the "
                                "archive", Location(path))
                    yield None
                    return
                total += info.file_size
            if total > MAX_UNPACKED_BYTES:
                diags.error("invalid-csar", f"archive unpacks to {total} bytes, more than "
                            f"{MAX_UNPACKED_BYTES}", Location(path))
                yield None
                return
            entry = _entry_definitions(archive, path, diags)
            if entry is None:
                yield None
                return
            try:
                archive.extractall(tmp)
            except (OSError, zipfile.BadZipFile, RuntimeError) as exc:
                diags.error("invalid-csar", f"cannot extract archive: {exc}", Location(path))
                yield None
                return
        yield tmp, os.path.join(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
