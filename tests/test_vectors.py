"""The Python implementation against the committed test vectors under tests/vectors/.

Success vectors must open to the recorded plaintext; every failure vector must raise exactly the
module's one error (not a subclass, not a RuntimeError leaking from PyNaCl), with its one
message. The same vectors are checked by libsodium.js in tests/test_interop.py.
"""

import base64
import hashlib
import json
from pathlib import Path

import pytest

from crypto import codename, envelope, keys, manifest
from crypto.errors import BadSignature, DecryptionError, InvalidCodename, KeyFileError

VECTORS = Path(__file__).resolve().parent / "vectors"
KINDS = ("envelope", "codename", "keyfile", "manifest")
VECTOR_FIELDS = {
    "envelope": {
        "name",
        "description",
        "expect",
        "identities",
        "plaintext_size",
        "plaintext_sha256",
        "envelope",
    },
}


def _load(kind: str) -> list[dict]:
    return [json.loads(p.read_text("utf-8")) for p in sorted((VECTORS / kind).glob("*.json"))]


def _params(kind: str):
    return [pytest.param(v, id=v["name"]) for v in _load(kind)]


def _raises_exactly(error: type[Exception], call) -> Exception:
    with pytest.raises(Exception) as caught:  # the exact type is checked below
        call()
    assert type(caught.value) is error, repr(caught.value)
    return caught.value


def test_vector_folders_are_complete_and_small():
    total = 0
    for kind in KINDS:
        files = list((VECTORS / kind).glob("*.json"))
        assert files, f"no {kind} vectors: run `make vectors`"
        for f in files:
            vector = json.loads(f.read_text("utf-8"))
            assert f.name == f"{vector['name']}.json"
            assert vector["expect"] in ("success", "failure")
            if kind in VECTOR_FIELDS:
                assert set(vector) == VECTOR_FIELDS[kind], f.name
            total += f.stat().st_size
    assert total < 2 * 1024 * 1024


def test_envelope_vectors_cover_both_outcomes():
    outcomes = [v["expect"] for v in _load("envelope")]
    assert outcomes.count("success") >= 9
    assert outcomes.count("failure") >= 30


@pytest.mark.parametrize("vector", _params("envelope"))
def test_envelope_vector(vector):
    identities = [bytes.fromhex(k) for k in vector["identities"]]
    sealed = base64.b64decode(vector["envelope"])
    pieces = [sealed[i : i + 7001] for i in range(0, len(sealed), 7001)]
    if vector["expect"] == "success":
        data = envelope.open_envelope(sealed, identities)
        assert len(data) == vector["plaintext_size"]
        assert hashlib.sha256(data).hexdigest() == vector["plaintext_sha256"]
        assert b"".join(envelope.open_stream(pieces, identities)) == data
        assert len(sealed) == envelope.sealed_size(len(data), sealed[9])
    else:
        error = _raises_exactly(DecryptionError, lambda: envelope.open_envelope(sealed, identities))
        assert str(error) == str(DecryptionError())
        _raises_exactly(DecryptionError, lambda: list(envelope.open_stream(pieces, identities)))


@pytest.mark.parametrize("vector", _params("codename"))
def test_codename_vector(vector):
    salt = bytes.fromhex(vector["salt"])
    if vector["expect"] == "failure":
        _raises_exactly(InvalidCodename, lambda: codename.derive(vector["codename_input"], salt))
        return
    assert codename.normalise(vector["codename_input"]) == vector["normalised"]
    derived = codename.derive(vector["codename_input"], salt)
    assert derived.public_key.hex() == vector["public_key"]
    assert derived.secret_key.hex() == vector["secret_key"]
    assert derived.login_secret.hex() == vector["login_secret"]
    verifier = codename.login_verifier(derived.login_secret, bytes.fromhex(vector["hash_key"]))
    assert verifier.hex() == vector["verifier"]


@pytest.mark.parametrize("vector", _params("keyfile"))
def test_key_file_vector(vector):
    data = bytes.fromhex(vector["key_file"])
    if vector["expect"] == "failure":
        _raises_exactly(KeyFileError, lambda: keys.open_key_file(data, vector["passphrase"]))
        return
    key = keys.open_key_file(data, vector["passphrase"])
    assert key.encryption_secret.hex() == vector["encryption_sk"]
    assert key.signing_seed.hex() == vector["signing_seed"]
    public = key.public()
    assert public.encryption.hex() == vector["encryption_pk"]
    assert public.verify.hex() == vector["verify_pk"]
    assert public.to_line() == vector["line"]
    assert public.fingerprint() == vector["fingerprint"]
    assert keys.AnalystPublicKey.from_line(vector["line"]) == public


@pytest.mark.parametrize("vector", _params("manifest"))
def test_manifest_vector(vector):
    blob = base64.b64decode(vector["signed"])
    trusted = [bytes.fromhex(k) for k in vector["trusted"]]
    if vector["expect"] == "failure":
        _raises_exactly(BadSignature, lambda: manifest.verify_manifest(blob, trusted))
        return
    verified = manifest.verify_manifest(blob, trusted)
    assert verified.manifest == vector["manifest"]
    assert verified.signer.hex() == vector["signer"]
