"""The project's promise for bad input, as one assertion: exit 2, one stderr line, no traceback."""


def assert_one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    err = result.stderr.strip()
    assert err.count("\n") == 0, err
    for needle in needles:
        assert needle in err, err
