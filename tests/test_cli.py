"""The ``blagh`` command, run on real files: what it creates, prints, and how it fails.

Key files cost an argon2id of 256 MiB per seal or open, so one key file is made for the whole
module and only a few tests open it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from blagh.cli import cli
from blagh.config import read_config_file
from blagh.datadir import DataDir
from crypto.keys import AnalystPublicKey, ServerVerifyKey, generate_analyst_key

PASSPHRASE = "correct horse battery staple"  # noqa: S105
DATA_FILES = {"db.key", "instance.salt", "login-hash.key", "server-signing.key", "config.toml"}


def run(*args: str | Path, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args], input=input, prog_name="blagh")


def one_line_error(result: Result, exit_code: int = 1) -> str:
    """Assert the command failed with a single ``blagh: error:`` line and no traceback."""
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # nothing escaped
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("blagh: error: ")
    return lines[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def printed_line(output: str, prefix: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith(prefix)]
    return line


@dataclass(frozen=True)
class KeyFile:
    path: Path
    passphrase_file: Path
    keygen_output: str
    public: AnalystPublicKey


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> KeyFile:
    directory = tmp_path_factory.mktemp("workstation")
    passphrase_file = directory / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    path = directory / "analyst.key"
    result = run("keygen", "--out", path, "--passphrase-file", passphrase_file)
    assert result.exit_code == 0, result.output
    line = printed_line(result.stdout, "blagh-analyst-v1:")
    return KeyFile(path, passphrase_file, result.stdout, AnalystPublicKey.from_line(line))


@pytest.fixture(scope="module")
def analyst_line() -> str:
    return generate_analyst_key().public().to_line()


# --- help -------------------------------------------------------------------------------------


def test_help() -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: blagh [OPTIONS] COMMAND [ARGS]...")
    assert "anonymous reporting of online crime" in result.stdout
    assert "operator, on the server" in result.stdout
    assert "analyst, on the workstation" in result.stdout
    for name in ("config", "init", "key", "keygen"):
        assert f"\n  {name} " in result.stdout
    for command in (["init"], ["keygen"], ["key", "show"], ["config", "check"]):
        assert run(*command, "--help").exit_code == 0


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("blagh ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "blagh: error: No such command 'frobnicate'; see 'blagh --help'"),
        (["init"], "blagh: error: Missing option '--data-dir'; see 'blagh init --help'"),
        (
            ["config", "check"],
            "blagh: error: Missing argument 'FILE'; see 'blagh config check --help'",
        ),
    ],
)
def test_usage_errors_are_one_line(args: list[str], message: str) -> None:
    assert one_line_error(run(*args), exit_code=2) == message


# --- init -------------------------------------------------------------------------------------


def test_init_creates_private_keys_and_config(tmp_path: Path, analyst_line: str) -> None:
    data_dir = tmp_path / "srv"
    result = run("init", "--data-dir", data_dir, "--analyst-key-line", analyst_line)
    assert result.exit_code == 0, result.output

    assert mode(data_dir) == 0o700
    assert {p.name for p in data_dir.iterdir()} == DATA_FILES
    for name in DATA_FILES:
        assert mode(data_dir / name) == 0o600, name
    db_key = (data_dir / "db.key").read_text()
    assert len(db_key) == 64
    assert int(db_key, 16)
    assert len((data_dir / "instance.salt").read_bytes()) == 16
    assert len((data_dir / "login-hash.key").read_bytes()) == 32
    assert len((data_dir / "server-signing.key").read_bytes()) == 32
    assert len({(data_dir / n).read_bytes()[:16] for n in DATA_FILES - {"config.toml"}}) == 4

    config = read_config_file(data_dir / "config.toml")
    assert config.instance.data_dir == data_dir
    assert config.recipients.analysts == (AnalystPublicKey.from_line(analyst_line),)

    server = ServerVerifyKey.from_line(printed_line(result.stdout, "blagh-server-v1:"))
    assert server == DataDir(data_dir).read_server_signing_key().public()
    assert f"Fingerprint: {server.fingerprint()}" in result.stdout
    assert "blagh config check" in result.stdout
    assert "blagh keygen" not in result.stdout  # the analysts are already there


def test_init_without_analysts_leaves_a_config_that_says_what_to_add(tmp_path: Path) -> None:
    data_dir = tmp_path / "srv"
    result = run("init", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert "blagh keygen --out FILE" in result.stdout

    check = run("config", "check", data_dir / "config.toml")
    message = one_line_error(check)
    assert message.startswith(
        f"blagh: error: {data_dir}/config.toml: [recipients] analysts is empty"
    )
    assert "blagh keygen" in message


def test_init_accepts_an_empty_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "srv"
    data_dir.mkdir(mode=0o755)
    assert run("init", "--data-dir", data_dir).exit_code == 0
    assert mode(data_dir) == 0o700


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "srv"
    data_dir.mkdir()
    (data_dir / "db.key").write_text("precious")

    message = one_line_error(run("init", "--data-dir", data_dir))

    assert message == (
        f"blagh: error: {data_dir} already exists and is not empty; init will not overwrite it. "
        "Choose another --data-dir or remove it."
    )
    assert [p.name for p in data_dir.iterdir()] == ["db.key"]
    assert (data_dir / "db.key").read_text() == "precious"


def test_init_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "srv").write_text("")
    message = one_line_error(run("init", "--data-dir", tmp_path / "srv"), exit_code=2)
    assert message == (
        f"blagh: error: Invalid value for '--data-dir': Directory '{tmp_path}/srv' is a file; "
        "see 'blagh init --help'"
    )


def test_init_reports_os_errors_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    message = one_line_error(run("init", "--data-dir", tmp_path / "file" / "srv"))
    assert message == f"blagh: error: {tmp_path}/file/srv: not a directory; check the path"


def test_init_permission_denied(tmp_path: Path) -> None:
    """Root ignores file modes, so as root the command runs without the capabilities that
    let it (setpriv drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its bounding set)."""
    parent = tmp_path / "locked"
    parent.mkdir(mode=0o500)
    args = ["init", "--data-dir", str(parent / "srv")]
    if os.geteuid() == 0:
        drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
        result = subprocess.run(
            [*drop, blagh_script(), *args], capture_output=True, text=True, check=False
        )
        assert result.returncode == 1
        message = result.stderr.strip()
    else:
        message = one_line_error(run(*args))
    assert message == (
        f"blagh: error: {parent}/srv: permission denied; "
        "check its owner and permissions, or run blagh as the user that owns it"
    )


def test_init_refuses_bad_analyst_lines_before_creating_anything(
    tmp_path: Path, analyst_line: str
) -> None:
    data_dir = tmp_path / "srv"
    message = one_line_error(
        run("init", "--data-dir", data_dir, "--analyst-key-line", analyst_line[:-2]), exit_code=2
    )
    assert message == (
        "blagh: error: Invalid value for '--analyst-key-line': the public key line is damaged: "
        "copy it again in full; copy the whole line that `blagh keygen` printed; "
        "see 'blagh init --help'"
    )
    twice = ["--analyst-key-line", analyst_line] * 2
    message = one_line_error(run("init", "--data-dir", data_dir, *twice))
    assert message.startswith("blagh: error: the same --analyst-key-line is given twice")
    assert not data_dir.exists()


# --- keygen and key show ----------------------------------------------------------------------


def test_keygen_writes_a_private_key_file_and_prints_its_line(key_file: KeyFile) -> None:
    assert mode(key_file.path) == 0o600
    assert key_file.path.stat().st_size > 0
    assert f"Fingerprint: {key_file.public.fingerprint()}" in key_file.keygen_output
    assert "[recipients]" in key_file.keygen_output
    assert PASSPHRASE not in key_file.keygen_output


def test_keygen_line_goes_into_a_config_that_loads(key_file: KeyFile, tmp_path: Path) -> None:
    data_dir = tmp_path / "srv"
    line = key_file.public.to_line()
    assert run("init", "--data-dir", data_dir, "--analyst-key-line", line).exit_code == 0
    result = run("config", "check", data_dir / "config.toml")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok: {data_dir}/config.toml\n")
    assert key_file.public.fingerprint() in result.stdout


def test_key_show(key_file: KeyFile) -> None:
    result = run(
        "key", "show", "--key-file", key_file.path, "--passphrase-file", key_file.passphrase_file
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        key_file.public.to_line(),
        f"Fingerprint: {key_file.public.fingerprint()}",
    ]


def test_key_show_wrong_passphrase(key_file: KeyFile, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    result = run("key", "show", "--key-file", key_file.path, "--passphrase-file", wrong)
    assert one_line_error(result) == (
        f"blagh: error: could not open {key_file.path}: wrong passphrase or damaged key file"
    )


def test_key_show_missing_file(tmp_path: Path) -> None:
    result = run("key", "show", "--key-file", tmp_path / "nope.key")
    assert one_line_error(result) == (
        f"blagh: error: {tmp_path}/nope.key: no such file or directory; check the path"
    )


def test_keygen_refuses_to_overwrite(key_file: KeyFile) -> None:
    before = key_file.path.read_bytes()
    result = run("keygen", "--out", key_file.path, "--passphrase-file", key_file.passphrase_file)
    assert one_line_error(result) == (
        f"blagh: error: {key_file.path} already exists; keygen will not overwrite a key file. "
        "Choose another --out."
    )
    assert key_file.path.read_bytes() == before


def test_keygen_refuses_an_empty_passphrase(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\nsecond line\n")
    result = run("keygen", "--out", tmp_path / "a.key", "--passphrase-file", empty)
    assert one_line_error(result) == (
        f"blagh: error: {empty}: the first line is empty; write the passphrase on it"
    )
    assert not (tmp_path / "a.key").exists()


def test_keygen_prompts_twice_without_echo(tmp_path: Path) -> None:
    out = tmp_path / "a.key"
    # A mismatch, then an empty answer, are asked again; nothing is written until both agree.
    answers = "one\ntwo\n\nsecret words\nsecret words\n"
    result = run("keygen", "--out", out, input=answers)
    assert result.exit_code == 0, result.output
    assert "secret words" not in result.output
    assert "Repeat the passphrase" in result.stderr
    assert AnalystPublicKey.from_line(printed_line(result.stdout, "blagh-analyst-v1:"))
    assert mode(out) == 0o600


def test_keygen_cancelled_prompt(tmp_path: Path) -> None:
    result = run("keygen", "--out", tmp_path / "a.key", input="")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "blagh: error: cancelled"
    assert not (tmp_path / "a.key").exists()


# --- config check -----------------------------------------------------------------------------


def test_config_check_errors(tmp_path: Path, analyst_line: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[recipients]\nanalysts = ["{analyst_line}"]\n[tor]\ncontol_port = 9051\n')
    message = one_line_error(run("config", "check", path))
    assert message.startswith(f"blagh: error: {path}: unknown key [tor] contol_port (did you mean")
    path.write_text("[tor\n")
    message = one_line_error(run("config", "check", path))
    assert message.startswith(f"blagh: error: {path}: line 1, column 5: not valid TOML")
    message = one_line_error(run("config", "check", tmp_path / "missing.toml"))
    assert message.startswith(f"blagh: error: {tmp_path}/missing.toml: no such file;")


# --- the installed console script -------------------------------------------------------------


def blagh_script() -> str:
    script = shutil.which("blagh", path=str(Path(sys.executable).parent))
    assert script is not None, "the blagh console script is not installed next to python"
    return script


def test_console_script_fails_in_one_line(tmp_path: Path) -> None:
    occupied = tmp_path / "srv"
    occupied.mkdir()
    (occupied / "keep").write_text("")
    for args in (
        ["init", "--data-dir", str(occupied)],
        ["config", "check", str(tmp_path / "missing.toml")],
        ["frobnicate"],
    ):
        result = subprocess.run(
            [blagh_script(), *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("blagh: error: ")

    result = subprocess.run(
        [blagh_script(), "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.startswith("Usage: blagh ")
