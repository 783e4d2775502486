"""The CLI entry point: one line per error, exit 2 for requests, 1 for runtime failures, WMARK_DEBUG."""
from __future__ import annotations

import errno
import warnings

import pytest

import wmark.cli.image as image_cli
from wmark.cli import main

ARGS = ["detect", "x.png", "--key-file", "k"]


def _failing(exc: BaseException):
    def func(_args):
        raise exc

    return func


@pytest.mark.parametrize("exc, rc, text", [
    (ValueError("x.png: not an image"), 2, "wmark: error: x.png: not an image"),
    (FileExistsError("out/a.png: exists (pass --overwrite to replace it)"), 2, "wmark: error: out/a.png: exists"),
    (OSError(errno.ENOSPC, "No space left on device"), 1, "wmark: error: [Errno 28] No space left on device"),
    (RuntimeError("kernel failed\nsecond line of detail"), 1, "wmark: error: RuntimeError: kernel failed (WMARK_DEBUG=1"),
    (EOFError(), 1, "wmark: error: EOFError: EOFError"),
])
def test_errors_are_one_line_with_the_exit_status_of_their_kind(monkeypatch, capsys, exc, rc, text):
    monkeypatch.delenv("WMARK_DEBUG", raising=False)
    monkeypatch.setattr(image_cli, "_detect", _failing(exc))
    assert main(ARGS) == rc
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(text), err


def test_wmark_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("WMARK_DEBUG", "1")
    monkeypatch.setattr(image_cli, "_detect", _failing(RuntimeError("kernel failed")))
    with pytest.raises(RuntimeError, match="kernel failed"):
        main(ARGS)


def test_library_warnings_are_one_line(monkeypatch, capsys):
    def func(_args):
        warnings.warn("this is the public demo key", UserWarning)
        return 0

    monkeypatch.setattr(image_cli, "_detect", func)
    assert main(ARGS) == 0
    assert capsys.readouterr().err == "wmark: warning: this is the public demo key\n"


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["detect", "x.png", "--key-file", "k", "--alpha", "2"])
    assert e.value.code == 2 and "(0, 1)" in capsys.readouterr().err
