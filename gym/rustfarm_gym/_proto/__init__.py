"""Generated gRPC client of proto/control.proto (do not edit by hand).

The files beside this one are committed, so installing the package needs no
protoc. Regenerate them after changing the proto with
``python -m rustfarm_gym._proto.generate`` (needs grpcio-tools, the ``dev``
extra); a test fails when they are stale.
"""
