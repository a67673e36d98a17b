"""Compile caikit.runtime's own protos when the installed caikit wheel lacks them.

``caikit.runtime.grpc_server`` imports ``caikit.runtime.protobufs.model_runtime_pb2``,
``model_runtime_pb2_grpc``, ``process_pb2`` and ``process_pb2_grpc``. The caikit 0.29.0 wheel
ships these modules; the 0.29.1 wheel ships only their ``.proto`` sources (under
``caikit/runtime/protobufs/protos/``), so its gRPC server dies with ``cannot import name
'model_runtime_pb2'``. :func:`ensure_runtime_protos` installs an import hook that, on first
import of one of those modules, compiles the shipped ``.proto`` files with grpcio-tools into a
cache directory and loads them under their caikit names. It does nothing when caikit already
ships the modules, and it imports neither caikit nor grpcio-tools until the hook fires.

``python -m caikit_dask.runtime_support [args]`` is ``python -m caikit.runtime [args]`` with the
hook installed first. Cache directory: ``$CAIKIT_DASK_PROTO_CACHE``, else
``$XDG_CACHE_HOME/caikit-dask/runtime-protos`` (``~/.cache/...``), else a temporary directory.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

__all__ = ["caikit_ships_runtime_protos", "ensure_runtime_protos", "main"]

_PACKAGE = "caikit.runtime.protobufs"
_PROTOS = ("model-runtime.proto", "process.proto", "model-mesh.proto")
_STEMS = tuple(name[: -len(".proto")].replace("-", "_") for name in _PROTOS)
_MODULES = tuple(f"{stem}{suffix}" for stem in _STEMS for suffix in ("_pb2", "_pb2_grpc"))

_lock = threading.Lock()
_finder: _CompiledProtoFinder | None = None


def _caikit_protobufs_dir() -> Path | None:
    """caikit/runtime/protobufs of the installed caikit, found without importing caikit."""
    spec = importlib.util.find_spec("caikit")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location, "runtime", "protobufs")
        if candidate.is_dir():
            return candidate
    return None


def _has_modules(directory: Path | None) -> bool:
    return directory is not None and all((directory / f"{m}.py").is_file() for m in _MODULES)


def caikit_ships_runtime_protos() -> bool:
    """True if the installed caikit has its compiled ``*_pb2`` runtime modules."""
    return _has_modules(_caikit_protobufs_dir())


def _cache_root() -> Path:
    if os.environ.get("CAIKIT_DASK_PROTO_CACHE"):
        return Path(os.environ["CAIKIT_DASK_PROTO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base, "caikit-dask", "runtime-protos")


def _compile_into(out_dir: Path, protos_dir: Path) -> None:
    try:
        from grpc_tools import protoc
    except ImportError as err:
        raise ImportError(
            "caikit's runtime protos are not compiled in this caikit wheel and grpcio-tools is "
            "not installed to compile them: pip install 'caikit-dask[runtime]'"
        ) from err
    well_known = Path(protoc.__file__).parent / "_proto"
    args = ["grpc_tools.protoc", f"-I{protos_dir}", f"-I{well_known}"]
    args += [f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"]
    args += [str(protos_dir / name) for name in _PROTOS]
    if protoc.main(args) != 0:
        raise ImportError(f"grpc_tools.protoc failed to compile {_PROTOS} from {protos_dir}")
    # The gRPC plugin writes `import model_runtime_pb2 as ...`; make it package-relative.
    for stem in _STEMS:
        grpc_file = out_dir / f"{stem}_pb2_grpc.py"
        text = re.sub(
            rf"^import ({stem}_pb2) as ", r"from . import \1 as ", grpc_file.read_text(), flags=re.M
        )
        grpc_file.write_text(text)


def _compiled_dir(protos_dir: Path) -> Path:
    """Directory holding the compiled modules, compiling them on a cache miss."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    for name in _PROTOS:
        digest.update((protos_dir / name).read_bytes())
    for dist in ("grpcio-tools", "protobuf"):
        digest.update(f"{dist}=={version(dist)}".encode())
    try:
        root = _cache_root()
        root.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable cache: compile per process
        root = Path(tempfile.mkdtemp(prefix="caikit-dask-runtime-protos-"))
    final = root / digest.hexdigest()[:16]
    if _has_modules(final):
        return final
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    _compile_into(staging, protos_dir)
    staging.chmod(0o755)  # mkdtemp makes it 0700; the cache may be shared
    try:
        staging.rename(final)  # atomic publish; a concurrent compile may win the race
    except OSError:
        if not _has_modules(final):
            return staging  # final is unusable: keep our private copy
        shutil.rmtree(staging, ignore_errors=True)
    return final


class _CompiledProtoFinder(importlib.abc.MetaPathFinder):
    """Serves ``caikit.runtime.protobufs.<stem>_pb2[_grpc]`` from the compiled cache."""

    def __init__(self, protos_dir: Path):
        self.protos_dir = protos_dir
        self.compiled: Path | None = None

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != _PACKAGE or name not in _MODULES:
            return None
        with _lock:
            if self.compiled is None:
                self.compiled = _compiled_dir(self.protos_dir)
        return importlib.util.spec_from_file_location(fullname, self.compiled / f"{name}.py")


def ensure_runtime_protos(force: bool = False) -> bool:
    """Make ``caikit.runtime``'s compiled protos importable; call before it imports them.

    Returns False when nothing is needed (caikit ships the modules, or caikit is absent) and
    True when the import hook is installed. Idempotent and cheap: compiling happens on first
    import. ``force=True`` serves the compiled modules even if caikit ships its own (tests).
    """
    global _finder
    if not force and caikit_ships_runtime_protos():
        return False
    protobufs = _caikit_protobufs_dir()
    if protobufs is None or not (protobufs / "protos").is_dir():
        return False
    with _lock:
        if _finder is None:
            _finder = _CompiledProtoFinder(protobufs / "protos")
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        # Last, so a caikit that ships the modules wins; first only when forced.
        sys.meta_path.insert(0 if force else len(sys.meta_path), _finder)
    return True


def main(argv: list[str] | None = None) -> None:
    """``python -m caikit.runtime`` with :func:`ensure_runtime_protos` applied first."""
    import runpy

    ensure_runtime_protos()
    sys.argv = ["caikit.runtime", *(sys.argv[1:] if argv is None else argv)]
    runpy.run_module("caikit.runtime", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    # Run the canonical module, not this __main__ copy, so the hook state is shared.
    from caikit_dask import runtime_support

    runtime_support.main()
