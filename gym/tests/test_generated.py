"""The committed gRPC client matches proto/control.proto."""

from rustfarm_gym._proto.generate import stale_files


def test_generated_client_is_up_to_date() -> None:
    assert stale_files() == [], "run `python -m rustfarm_gym._proto.generate`"
