"""The contract of every command's refusal: one line (`Error: …`), exit code 1 or 2, no traceback."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from clinotel.cli import main


def refused_in_one_line(argv: Sequence[str], code: int, says: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run `clinotel argv`, assert it refused as the contract says, and return everything printed."""
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    assert exited.value.code == code, err
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: "), err
    assert says in lines[0], lines[0]
    return out + err
