"""Regenerate (or check) the committed gRPC client from proto/control.proto.

Usage: ``python -m rustfarm_gym._proto.generate [--check]``. ``--check`` exits
1 when the committed files differ from what grpcio-tools generates now.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = ("control_pb2.py", "control_pb2.pyi", "control_pb2_grpc.py")


def proto_source() -> Path:
    """The workspace's proto/control.proto (this package lives in gym/)."""
    path = HERE.parents[2] / "proto" / "control.proto"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run from a rust-farm checkout")
    return path


def generate(out: Path) -> None:
    """Generate the client into ``out`` (a directory)."""
    from grpc_tools import protoc  # dev extra only

    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "rustfarm_gym" / "_proto"
        pkg.mkdir(parents=True)
        shutil.copy(proto_source(), pkg / "control.proto")
        # Compiling it under rustfarm_gym/_proto makes the generated imports
        # package-absolute (`from rustfarm_gym._proto import control_pb2`).
        args = [
            "protoc",
            f"-I{tmp}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            "rustfarm_gym/_proto/control.proto",
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("grpc_tools.protoc failed")
        for name in FILES:
            shutil.copy(pkg / name, out / name)


def stale_files() -> list[str]:
    """Names of committed files that differ from freshly generated ones."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        return [
            n for n in FILES if (Path(tmp) / n).read_bytes() != (HERE / n).read_bytes()
        ]


def main() -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="only check, exit 1 if stale")
    a = ap.parse_args()
    if a.check:
        stale = stale_files()
        if stale:
            print(f"stale generated files: {', '.join(stale)}", file=sys.stderr)
            return 1
        print("generated files are up to date")
        return 0
    generate(HERE)
    print(f"generated {', '.join(FILES)} in {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
