"""Safety rails of the `blagh` command (issue 13): the data folder named one way and checked,
passphrase strength, `key show` without the passphrase, bundle kinds told apart, clear output
path errors, private files."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from blagh.cli import cli
from crypto.keys import generate_analyst_key


def run(*args: str | Path, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], input=input, prog_name="blagh")


def one_line_error(result: Result, exit_code: int = 1) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("blagh: error: ")
    return lines[0].removeprefix("blagh: error: ")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def analyst_line() -> str:
    return generate_analyst_key().public().to_line()


@pytest.fixture
def data_dir(tmp_path: Path, analyst_line: str) -> Path:
    path = tmp_path / "srv"
    assert run("init", "--data-dir", path, "--analyst-key-line", analyst_line).exit_code == 0
    return path


# --- the data folder ----------------------------------------------------------------------------


def test_init_names_the_folder_that_holds_the_config(data_dir: Path) -> None:
    assert re.search(r'(?m)^data_dir = "\."$', (data_dir / "config.toml").read_text())
    result = run("config", "check", data_dir / "config.toml")
    assert result.exit_code == 0, result.output
    assert f"data in {data_dir}\n" in result.stdout


def test_config_check_refuses_a_missing_data_folder(tmp_path: Path, analyst_line: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[instance]\ndata_dir = "nowhere"\n[recipients]\nanalysts = ["{analyst_line}"]\n'
    )
    message = one_line_error(run("config", "check", config))
    assert message == (
        f"the data folder {tmp_path}/nowhere does not exist; create it with "
        f"`blagh init --data-dir {tmp_path}/nowhere`, or fix [instance] data_dir"
    )


def test_a_data_folder_open_to_others_is_refused(data_dir: Path) -> None:
    data_dir.chmod(0o755)
    expected = (
        f"the data folder {data_dir} has mode 0755: other users can reach its keys and "
        f"database; run chmod 700 {data_dir}"
    )
    assert one_line_error(run("config", "check", data_dir / "config.toml")) == expected
    assert one_line_error(run("status", "--data-dir", data_dir)) == expected
    assert one_line_error(run("serve", "--data-dir", data_dir, "--tor", "off")) == expected
    data_dir.chmod(0o700)
    assert run("config", "check", data_dir / "config.toml").exit_code == 0


def test_a_config_naming_another_folder_is_an_error_not_overridden(
    data_dir: Path, tmp_path: Path
) -> None:
    config = data_dir / "config.toml"
    config.write_text(config.read_text().replace('data_dir = "."', 'data_dir = "/srv/other"'))
    message = one_line_error(run("purge", "--data-dir", data_dir))
    assert message == (
        f'{config} says [instance] data_dir = "/srv/other", but --data-dir names {data_dir}: '
        'they must name the same folder. Set data_dir = "." in that config (the folder that '
        "holds it), or give the --data-dir it names"
    )
    # The absolute path of the folder itself is the same folder.
    config.write_text(config.read_text().replace('"/srv/other"', f'"{data_dir}"'))
    assert run("purge", "--data-dir", data_dir).exit_code == 0


# --- analyst keys -------------------------------------------------------------------------------

VECTORS = Path(__file__).parent / "vectors" / "keyfile"


def test_keygen_refuses_a_short_passphrase(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("hunter2\n")
    message = one_line_error(run("keygen", "--out", tmp_path / "a.key", "--passphrase-file", short))
    assert message == (
        f"{short}: the passphrase is too short: use at least 12 characters, best a few random "
        "words (e.g. five or six diceware words)"
    )
    assert not (tmp_path / "a.key").exists()
    # Asked again at the prompt, until it is long enough.
    answers = "x\nx\nlong enough words\nlong enough words\n"
    result = run("keygen", "--out", tmp_path / "a.key", input=answers)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("the passphrase is too short") == 1


def test_key_show_needs_no_passphrase(tmp_path: Path) -> None:
    passphrase = tmp_path / "pass"
    passphrase.write_text("correct horse battery staple\n")
    made = run("keygen", "--out", tmp_path / "a.key", "--passphrase-file", passphrase)
    assert made.exit_code == 0
    line = next(x for x in made.stdout.splitlines() if x.startswith("blagh-analyst-v1:"))
    result = run("key", "show", "--key-file", tmp_path / "a.key", input="")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == line
    assert "Passphrase" not in result.output
    # With the passphrase, the file is opened and the public part checked against it.
    checked = run("key", "show", "--key-file", tmp_path / "a.key", "--passphrase-file", passphrase)
    assert checked.exit_code == 0 and checked.stdout == result.stdout
    # A public part swapped for another key's: opening the file refuses it.
    data = (tmp_path / "a.key").read_bytes()
    other = generate_analyst_key().public()
    (tmp_path / "b.key").write_bytes(data[:137] + other.encryption + other.verify)
    assert (
        one_line_error(
            run("key", "show", "--key-file", tmp_path / "b.key", "--passphrase-file", passphrase)
        )
        == f"could not open {tmp_path}/b.key: wrong passphrase or damaged key file"
    )
    (tmp_path / "c.key").write_bytes(b"not a key file")
    assert one_line_error(run("key", "show", "--key-file", tmp_path / "c.key")) == (
        f"{tmp_path}/c.key: this is not a blagh analyst key file, or it is damaged; check the "
        "path (--key-file)"
    )


def test_key_show_of_a_version_1_file_asks_for_the_passphrase(tmp_path: Path) -> None:
    vector = json.loads((VECTORS / "success_basic.json").read_text())
    old = tmp_path / "old.key"
    old.write_bytes(bytes.fromhex(vector["key_file"]))
    result = run("key", "show", "--key-file", old, input=vector["passphrase"] + "\n")
    assert result.exit_code == 0, result.output
    assert "Passphrase" in result.stderr
    assert "Fingerprint: 4D55-1A43-67D1-EE57-D310" in result.stdout


# --- output paths and progress ------------------------------------------------------------------


def test_export_bundle_bad_output_paths_and_progress(tmp_path: Path) -> None:
    from pickup_helpers import add_report, make_server

    server = make_server(tmp_path)
    try:
        add_report(server, files=1)
        data = server.data_dir.path
        missing = tmp_path / "no-such-media" / "pickup.bundle"
        message = one_line_error(run("export-bundle", "--data-dir", data, "--out", missing))
        assert message == f"{missing.parent} is not a directory; create it or choose another --out"
        (tmp_path / "a-file").write_text("x")
        under_file = tmp_path / "a-file" / "pickup.bundle"
        message = one_line_error(run("export-bundle", "--data-dir", data, "--out", under_file))
        assert message == f"{tmp_path}/a-file is not a directory; create it or choose another --out"
        out = tmp_path / "pickup.bundle"
        result = run("export-bundle", "--data-dir", data, "--out", out)
        assert result.exit_code == 0, result.output
        assert "Writing the bundle" in result.stderr
        assert mode(out) == 0o600
    finally:
        server.close()


def test_a_failed_copy_names_the_output_not_its_temporary_file(tmp_path: Path) -> None:
    import errno
    import io

    from source_interface.pickup.bundles import copy_to_new_file

    out = tmp_path / "gone" / "pickup.bundle"
    with pytest.raises(OSError) as caught:
        copy_to_new_file(io.BytesIO(b"bundle"), out)
    assert caught.value.errno == errno.ENOENT
    assert caught.value.filename == str(out)
    assert ".partial" not in str(caught.value)


def test_import_replies_shows_progress(tmp_path: Path) -> None:
    from pickup_helpers import Reply, add_report, all_item_ids, make_server, reply_bundle

    server = make_server(tmp_path)
    try:
        reporter = add_report(server)
        reply = Reply(reporter.reports[0].id, reporter.public_key or b"", "Thanks.")
        bundle = reply_bundle(
            tmp_path / "r.bundle", server.analyst, [reply], acknowledged=all_item_ids(server)
        )
        result = run("import-replies", "--data-dir", server.data_dir.path, bundle)
        assert result.exit_code == 0, result.output
        assert "Checking the bundle" in result.stderr
        assert result.stdout.startswith("1 reply stored")
    finally:
        server.close()
