"""The local model server's command line, named like tensorflow_model_server's."""

import pytest

from serving.__main__ import make_runner, parse_args
from serving.batching import Batcher, BatchingOptions
from serving.service import DirectRunner
from tools.stack import ROOT

BATCHING_FILE = str(ROOT / "serving" / "batching.config")


@pytest.mark.parametrize(
    ("flags", "enabled"),
    [
        ([], False),
        (["--enable_batching"], True),
        (["--enable_batching=true"], True),
        (["--enable_batching=false"], False),
    ],
)
def test_enable_batching_reads_like_tensorflow_model_server(flags, enabled):
    assert parse_args(flags).enable_batching is enabled


def test_batching_file_without_enable_batching_is_refused(capsys):
    with pytest.raises(SystemExit) as raised:
        parse_args([f"--batching_parameters_file={BATCHING_FILE}"])

    assert raised.value.code == 2
    assert capsys.readouterr().err.endswith(
        "error: --batching_parameters_file is set without --enable_batching\n"
    )


def test_channel_arguments_become_grpc_options():
    args = parse_args(
        ["--grpc_channel_arguments=grpc.max_receive_message_length=1024,x.y=z"]
    )

    assert args.grpc_channel_arguments == [
        ("grpc.max_receive_message_length", 1024),
        ("x.y", "z"),
    ]


def test_runner_batches_with_the_file_when_enabled():
    direct = make_runner(parse_args([]))
    batcher = make_runner(
        parse_args(["--enable_batching", f"--batching_parameters_file={BATCHING_FILE}"])
    )
    try:
        assert isinstance(direct, DirectRunner)
        assert isinstance(batcher, Batcher)
        assert batcher.options.max_batch_size == 16
        assert batcher.options.num_batch_threads == 2
        assert batcher.options.batch_timeout_seconds == 0.0
        assert batcher.options.allowed_batch_sizes == ()
    finally:
        batcher.stop()


def test_enable_batching_alone_uses_tensorflow_servings_defaults():
    batcher = make_runner(parse_args(["--enable_batching"]))
    try:
        assert batcher.options == BatchingOptions()
        assert batcher.options.max_batch_size == 1000
    finally:
        batcher.stop()
