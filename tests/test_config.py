"""Loading config.toml: defaults, the commented example, and one clear message per mistake."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import get_type_hints

import pytest

from blagh.config import (
    LANGUAGES,
    Config,
    EmergencyLabels,
    EmergencyNumber,
    InstanceConfig,
    RecipientsConfig,
    TorConfig,
    load_config,
    read_config_file,
    render_config_file,
)
from blagh.errors import ConfigError
from crypto.keys import AnalystPublicKey, generate_analyst_key

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"
PLACEHOLDER = '    # "blagh-analyst-v1:...",  <- the line that `blagh keygen` printed'


@pytest.fixture(scope="module")
def analysts() -> list[AnalystPublicKey]:
    return [generate_analyst_key().public() for _ in range(3)]


@pytest.fixture(scope="module")
def line(analysts: list[AnalystPublicKey]) -> str:
    return analysts[0].to_line()


def with_recipient(line: str, **sections: Mapping[str, object]) -> dict[str, object]:
    return {"recipients": {"analysts": [line]}, **sections}


def error_of(mapping: Mapping[str, object]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(mapping, "config.toml")
    return str(caught.value)


# --- the example file ---------------------------------------------------------------------------


def test_example_is_the_template_rendered() -> None:
    """config.example.toml and the file `blagh init` writes come from one template."""
    expected = render_config_file(data_dir=Path("/var/lib/blagh"))
    assert EXAMPLE.read_text("utf-8") == expected, (
        "config.example.toml is generated from blagh/config.template.toml: edit the template, "
        "then run .venv/bin/python -c 'from pathlib import Path; from blagh.config import "
        'render_config_file as r; Path("config.example.toml").write_text('
        'r(data_dir=Path("/var/lib/blagh")))\''
    )


def test_example_with_an_analyst_loads_and_shows_the_defaults(
    tmp_path: Path, analysts: list[AnalystPublicKey]
) -> None:
    text = EXAMPLE.read_text("utf-8")
    assert PLACEHOLDER in text
    config_file = tmp_path / "config.toml"
    config_file.write_text(text.replace(PLACEHOLDER, f'    "{analysts[0].to_line()}",'))

    config = read_config_file(config_file)

    # Every value written in the example is the embedded default (but the two that cannot be).
    assert config == Config(
        instance=InstanceConfig(data_dir=Path("/var/lib/blagh")),
        recipients=RecipientsConfig(analysts=(analysts[0],)),
    )


def test_example_documents_every_setting() -> None:
    text = EXAMPLE.read_text("utf-8")
    sections = dict(re.findall(r"^\[(\w+)\]\n(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL))
    section_types = get_type_hints(Config)
    assert list(sections) == list(section_types)
    for section, body in sections.items():
        for setting in dataclasses.fields(section_types[section]):
            found = re.search(rf"^(?:# )?{setting.name} = ", body, re.MULTILINE)
            assert found, f"[{section}] {setting.name} is missing from config.example.toml"
            above = body[: found.start()].rstrip("\n").splitlines()[-1]
            # A comment, or a neighbouring setting that shares it.
            assert above.startswith("#") or " = " in above, f"[{section}] {setting.name}"


def test_example_for_morocco_loads(tmp_path: Path, line: str) -> None:
    """The commented Moroccan numbers, uncommented as an operator would, load as documented."""
    text = EXAMPLE.read_text("utf-8")
    block = re.search(r"^# numbers = \[\n(?:# .*\n)*?# \]\n", text, re.MULTILINE)
    assert block, "config.example.toml: the commented Moroccan [emergency] numbers are gone"
    numbers = "".join(row.removeprefix("# ") + "\n" for row in block.group(0).splitlines())
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'[emergency]\n{numbers}\n[recipients]\nanalysts = ["{line}"]\n', "utf-8"
    )

    police, gendarmerie, mobile = read_config_file(config_file).emergency.numbers

    assert (police.number, gendarmerie.number, mobile.number) == ("19", "177", "112")
    assert police.labels.get("ar") == "الشرطة"
    assert gendarmerie.labels.get("fr") == "Gendarmerie royale"
    assert gendarmerie.labels.get("en") == ""  # English pages show the label itself


def test_emergency_labels_cover_every_language() -> None:
    """Adding a language to Language without a label field would leave its pages in English."""
    assert {f.name for f in dataclasses.fields(EmergencyLabels)} == set(LANGUAGES)


def test_emergency_labels_are_read_per_language(line: str) -> None:
    config = load_config(
        with_recipient(
            line,
            emergency={
                "numbers": [
                    {
                        "label": "Police",
                        "labels": {"ar": "الشرطة", "fr": "Police", "es": "Policía"},
                        "number": "19",
                    }
                ]
            },
        )
    )
    (police,) = config.emergency.numbers
    assert police.labels == EmergencyLabels(ar="الشرطة", fr="Police", es="Policía")
    assert police.labels.get("es") == "Policía"
    assert police.labels.get("xx") == ""


def test_emergency_labels_refuse_an_unknown_language(line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(
            with_recipient(
                line,
                emergency={
                    "numbers": [{"label": "Police", "labels": {"de": "Polizei"}, "number": "19"}]
                },
            ),
            "config.toml",
        )
    assert str(caught.value).startswith(
        "config.toml: unknown key [emergency] numbers[0].labels.de (known: ar, fr, en, es)"
    )


def test_example_as_is_says_to_add_an_analyst() -> None:
    with pytest.raises(ConfigError) as caught:
        read_config_file(EXAMPLE)
    message = str(caught.value)
    assert message.startswith(f"{EXAMPLE}: [recipients] analysts is empty")
    assert "blagh keygen" in message


# --- defaults and values ------------------------------------------------------------------------


def test_only_recipients_is_required(line: str, analysts: list[AnalystPublicKey]) -> None:
    config = load_config({"recipients": {"analysts": [line]}})
    assert config == Config(recipients=RecipientsConfig(analysts=(analysts[0],)))
    assert config.source_interface.listen_host == "127.0.0.1"
    assert config.source_interface.listen_port == 8080
    assert config.source_interface.languages == ("ar", "fr", "en", "es")
    assert config.tor.mode == "launch"
    assert config.tor.control_port is None
    assert config.pickup.enabled is False


def test_values_are_converted(analysts: list[AnalystPublicKey]) -> None:
    config = load_config(
        {
            "instance": {"name": "Unité cyber", "data_dir": "/srv/blagh"},
            "source_interface": {"languages": ["fr", "ar"], "default_language": "fr"},
            "emergency": {"numbers": [{"label": "Police", "number": "17"}]},
            "recipients": {"analysts": [a.to_line() for a in analysts]},
            "tor": {"mode": "attach", "control_port": 9051, "pow_defense": False},
            "pickup": {"enabled": True, "listen_port": 8090},
            "retention": {"delivered_days": 0},
        }
    )
    assert config.instance.name == "Unité cyber"
    assert config.instance.data_dir == Path("/srv/blagh")
    assert config.source_interface.languages == ("fr", "ar")
    assert config.emergency.numbers == (EmergencyNumber(label="Police", number="17"),)
    assert config.recipients.analysts == tuple(analysts)
    assert config.tor == TorConfig(mode="attach", control_port=9051, pow_defense=False)
    assert config.pickup.listen_port == 8090
    assert config.retention.delivered_days == 0


def test_config_is_frozen(line: str) -> None:
    config = load_config(with_recipient(line))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tor = TorConfig(mode="off")  # type: ignore[misc]
    assert isinstance(config.recipients.analysts, tuple)


def test_relative_paths_are_taken_from_base_dir(line: str, tmp_path: Path) -> None:
    mapping = with_recipient(
        line,
        instance={"data_dir": "state"},
        tor={"mode": "attach", "control_socket": "run/control"},
    )
    config = load_config(mapping, base_dir=tmp_path)
    assert config.instance.data_dir == tmp_path / "state"
    assert config.tor.control_socket == tmp_path / "run/control"
    assert load_config(mapping).instance.data_dir == Path("state")
    absolute = with_recipient(line, instance={"data_dir": "/var/lib/blagh"})
    assert load_config(absolute, base_dir=tmp_path).instance.data_dir == Path("/var/lib/blagh")


def test_read_config_file_resolves_paths_next_to_the_file(line: str, tmp_path: Path) -> None:
    config_file = tmp_path / "etc" / "config.toml"
    config_file.parent.mkdir()
    config_file.write_text(f'[recipients]\nanalysts = ["{line}"]\n')
    assert read_config_file(config_file).instance.data_dir == tmp_path / "etc" / "data"


@pytest.mark.parametrize(
    "data_dir", ["/srv/with space", '/srv/quote"d', "/srv/back\\slash", "/srv/new\nline", "/é"]
)
def test_rendered_config_round_trips_any_path(
    data_dir: str, analysts: list[AnalystPublicKey]
) -> None:
    text = render_config_file(data_dir=Path(data_dir), analysts=analysts)
    config = load_config(tomllib.loads(text))
    assert config.instance.data_dir == Path(data_dir)
    assert config.recipients.analysts == tuple(analysts)


# --- one message per mistake --------------------------------------------------------------------

KNOWN_TOR = (
    "mode, control_socket, control_port, control_password_file, pow_defense, pow_queue_rate, "
    "pow_queue_burst, max_streams_per_circuit, max_streams_close_circuit"
)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"source_interface": {"listen_port": "80"}},
            'config.toml: [source_interface] listen_port must be an integer, got "80"',
        ),
        (
            {"source_interface": {"listen_port": True}},
            "config.toml: [source_interface] listen_port must be an integer, got true",
        ),
        (
            {"source_interface": {"listen_port": 80.0}},
            "config.toml: [source_interface] listen_port must be an integer, got 80.0",
        ),
        (
            {"tor": {"pow_defense": "yes"}},
            'config.toml: [tor] pow_defense must be true or false, got "yes"',
        ),
        (
            {"instance": {"name": 7}},
            "config.toml: [instance] name must be a string, got 7",
        ),
        (
            {"tor": {"contol_port": 9051}},
            "config.toml: unknown key [tor] contol_port "
            f"(did you mean control_port? known: {KNOWN_TOR})",
        ),
        (
            {"tor": {"bridges": []}},
            f"config.toml: unknown key [tor] bridges (known: {KNOWN_TOR})",
        ),
        (
            {"tro": {"mode": "off"}},
            "config.toml: unknown section [tro] (did you mean tor? known: instance, "
            "source_interface, limits, emergency, recipients, tor, pickup, clearnet, retention, "
            "store)",
        ),
        (
            {"name": "Blagh"},
            "config.toml: unknown key name outside any section (known: instance, "
            "source_interface, limits, emergency, recipients, tor, pickup, clearnet, retention, "
            "store)",
        ),
        (
            {"instance": "Blagh"},
            'config.toml: [instance] must be a table, got "Blagh"',
        ),
        (
            {"source_interface": {"listen_port": 0}},
            "config.toml: [source_interface] listen_port must be between 1 and 65535, got 0",
        ),
        (
            {"pickup": {"listen_port": 65536}},
            "config.toml: [pickup] listen_port must be between 1 and 65535, got 65536",
        ),
        (
            {"source_interface": {"workers": 0}},
            "config.toml: [source_interface] workers must be between 1 and 64, got 0",
        ),
        (
            {"retention": {"delivered_days": -1}},
            "config.toml: [retention] delivered_days must be between 0 and 365, got -1",
        ),
        (
            {"instance": {"name": ""}},
            "config.toml: [instance] name must not be empty",
        ),
        (
            {"instance": {"data_dir": "~/blagh"}},
            "config.toml: [instance] data_dir must be a full path: ~ is not expanded, "
            'got "~/blagh"',
        ),
        (
            {"tor": {"mode": "onion"}},
            'config.toml: [tor] mode must be one of "launch", "attach", "offline", "off", '
            'got "onion"',
        ),
        (
            {"source_interface": {"languages": ["ar", "de"]}},
            'config.toml: [source_interface] languages[1] must be one of "ar", "fr", "en", "es", '
            'got "de"',
        ),
        (
            {"source_interface": {"languages": "ar"}},
            'config.toml: [source_interface] languages must be an array, got "ar"',
        ),
        (
            {"source_interface": {"languages": []}},
            "config.toml: [source_interface] languages is empty: it needs at least one item",
        ),
        (
            {"source_interface": {"languages": ["fr", "en", "fr"]}},
            "config.toml: [source_interface] languages[2] repeats languages[0]",
        ),
        (
            {"source_interface": {"languages": ["fr", "en"]}},
            'config.toml: [source_interface] default_language "ar" must be one of languages '
            '("fr", "en")',
        ),
        (
            {"emergency": {"numbers": [{"label": "Police", "number": 17}]}},
            "config.toml: [emergency] numbers[0].number must be a string, got 17; "
            'write the number as a string, e.g. number = "112"',
        ),
        (
            {"emergency": {"numbers": [{"label": "Police", "numbre": "17"}]}},
            "config.toml: unknown key [emergency] numbers[0].numbre "
            "(did you mean number? known: label, number, labels)",
        ),
        (
            {"emergency": {"numbers": [{"label": "Police"}]}},
            "config.toml: [emergency] numbers[0].number is missing; "
            'write the number as a string, e.g. number = "112"',
        ),
        (
            {"tor": {"mode": "attach"}},
            'config.toml: [tor] mode = "attach" needs control_socket or control_port: '
            "where the running tor's control interface is",
        ),
        (
            {"tor": {"mode": "attach", "control_port": 9051, "control_socket": "/run/c"}},
            "config.toml: [tor] set control_socket or control_port, not both",
        ),
        (
            {"tor": {"control_port": 9051}},
            'config.toml: [tor] control_port is only used with mode = "attach" '
            '(mode is "launch"): remove it, or set mode = "attach"',
        ),
        (
            {"tor": {"mode": "attach", "control_port": 0}},
            "config.toml: [tor] control_port must be between 1 and 65535, got 0",
        ),
        (
            {"store": {"backend": "postgresql"}},
            'config.toml: [store] backend = "postgresql" needs dsn = '
            '"host=... dbname=... user=..."',
        ),
        (
            {"store": {"backend": "mysql"}},
            'config.toml: [store] backend must be one of "sqlcipher", "postgresql", got "mysql"',
        ),
        (
            {"pickup": {"enabled": True, "listen_port": 8080}},
            "config.toml: [pickup] listen_port 8080 is also [source_interface] listen_port: "
            "give the pickup API a port of its own",
        ),
    ],
)
def test_mistakes_name_the_file_and_key(
    line: str, sections: dict[str, object], message: str
) -> None:
    assert error_of(with_recipient(line, **sections)) == message  # type: ignore[arg-type]


KEYGEN_HINT = "paste the public key line that `blagh keygen` printed on the analyst's workstation"


def test_recipients_are_required() -> None:
    assert error_of({}) == (
        "config.toml: [recipients] is missing; add a [recipients] section with "
        f"analysts = [...]; {KEYGEN_HINT}"
    )
    assert error_of({"recipients": {}}) == (
        f"config.toml: [recipients] analysts is missing; {KEYGEN_HINT}"
    )
    assert error_of({"recipients": {"analysts": []}}) == (
        f"config.toml: [recipients] analysts is empty: it needs at least one item; {KEYGEN_HINT}"
    )


def test_a_bad_recipient_line_is_named_by_index(line: str) -> None:
    message = error_of({"recipients": {"analysts": [line, line[:-3]]}})
    assert message == (
        "config.toml: [recipients] analysts[1] is not an analyst public key line "
        f"(the public key line is damaged: copy it again in full); {KEYGEN_HINT}"
    )
    message = error_of({"recipients": {"analysts": [line, "ssh-ed25519 AAAA"]}})
    assert message.startswith("config.toml: [recipients] analysts[1] is not an analyst public")
    message = error_of({"recipients": {"analysts": [line, 5]}})
    assert message == (
        "config.toml: [recipients] analysts[1] must be an analyst public key line (a string), "
        f"got 5; {KEYGEN_HINT}"
    )
    message = error_of({"recipients": {"analysts": [line, line]}})
    assert message == f"config.toml: [recipients] analysts[1] repeats analysts[0]; {KEYGEN_HINT}"


def test_at_most_32_recipients() -> None:
    lines = [generate_analyst_key().public().to_line() for _ in range(33)]
    assert load_config({"recipients": {"analysts": lines[:32]}}).recipients.analysts
    assert error_of({"recipients": {"analysts": lines}}) == (
        f"config.toml: [recipients] analysts holds 33 items, at most 32 allowed; {KEYGEN_HINT}"
    )


# --- reading the file ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError) as caught:
        read_config_file(path)
    assert str(caught.value) == (
        f"{path}: no such file; create one with `blagh init --data-dir DIR`, "
        "or start from config.example.toml"
    )


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        read_config_file(tmp_path)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[recipients]\nanalysts = ["{line}"]\n\n[tor]\nmode = launch\n')
    with pytest.raises(ConfigError) as caught:
        read_config_file(path)
    assert str(caught.value) == f"{path}: line 5, column 8: not valid TOML: invalid value"


def test_duplicate_key_is_a_syntax_error(tmp_path: Path, line: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[recipients]\nanalysts = ["{line}"]\n[tor]\nmode = "off"\nmode = "off"\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: line 5, .*not valid TOML"):
        read_config_file(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[instance]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        read_config_file(path)
    assert str(caught.value) == f"{path}: line 2: not UTF-8 text; save the file as UTF-8"


def test_file_errors_name_the_file(tmp_path: Path, line: str) -> None:
    path = tmp_path / "blagh.toml"
    path.write_text(f'[recipients]\nanalysts = ["{line}"]\n[tor]\ncontol_port = 9051\n')
    with pytest.raises(ConfigError) as caught:
        read_config_file(path)
    assert str(caught.value).startswith(f"{path}: unknown key [tor] contol_port (did you mean")


# --- where the app listens: loopback only, a clearnet listener of its own -----------------------


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "192.168.1.10", "example.org", "::", "127.0.0.256"],  # noqa: S104
)
def test_the_onion_listener_is_loopback_only(line: str, host: str) -> None:
    """A no-JS form is plaintext until sealed: it must never cross a network to reach us."""
    message = error_of(with_recipient(line, source_interface={"listen_host": host}))
    assert f"listen_host {json.dumps(host)} must be a loopback address" in message
    assert "[clearnet]" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_loopback_hosts_are_accepted(line: str, host: str) -> None:
    config = load_config(with_recipient(line, source_interface={"listen_host": host}))
    assert config.source_interface.listen_host == host


@pytest.mark.parametrize(
    ("clearnet", "fragment"),
    [
        ({"listen": "0.0.0.0:8082"}, "must be a loopback address and port"),
        ({"listen": "127.0.0.1"}, "must be a loopback address and port"),
        ({"listen": "10.0.0.2:443"}, "must be a loopback address and port"),
        ({"listen": "unix:relative.sock"}, "a unix socket needs an absolute path"),
        ({"enabled": True}, 'public_url "" must be the site\'s https:// address'),
        ({"enabled": True, "public_url": "http://x.org"}, "must be the site's https:// address"),
        ({"enabled": True, "public_url": "https://x.org/a"}, "must be the site's https://"),
        ({"onion_address": "example.onion"}, "is not an onion address"),
        (
            {"enabled": True, "public_url": "https://x.org", "listen": "127.0.0.2:8080"},
            "has the port of the onion service (or of the pickup API)",
        ),
    ],
)
def test_clearnet_mistakes_are_explained(
    line: str, clearnet: dict[str, object], fragment: str
) -> None:
    assert fragment in error_of(with_recipient(line, clearnet=clearnet))


def test_a_clearnet_listener_on_a_unix_socket(line: str) -> None:
    clearnet = {"enabled": True, "listen": "unix:/run/blagh/c.sock", "public_url": "https://x.org"}
    config = load_config(with_recipient(line, clearnet=clearnet))
    assert config.clearnet.unix_socket == "/run/blagh/c.sock"


def test_the_store_dsn_is_never_shown() -> None:
    """A DSN may carry a password: the config's repr (in a traceback, a debug print) omits it."""
    from blagh.config import StoreConfig

    config = StoreConfig(backend="postgresql", dsn="host=db user=blagh password=hunter2")
    assert "hunter2" not in repr(config)
