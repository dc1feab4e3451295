"""transforms.core.digest.content_digest: the streamed digest of a folder is the SHA-256 of the JSON
list [[relative path, size, sha256], ...] in Path order, whatever the round size."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from transforms.core import digest


@pytest.fixture
def night(tmp_path):
    root = tmp_path / "night"
    (root / "79" / "79153").mkdir(parents=True)
    (root / "79" / "79153" / "b.xml").write_bytes(b"<b/>")
    (root / "79" / "79153" / "a é.xml").write_bytes(b"<a/>\n")
    (root / "79-x.xml").write_bytes(b"")  # "79-x.xml" sorts after the folder "79" part by part
    (root / "fhir").mkdir()
    (root / "fhir" / "Immunization-0001.ndjson").write_bytes(b"{}\n")
    os.symlink(tmp_path / "elsewhere", root / "fhir" / "gone.xml")  # dangling: not a file, not listed
    os.symlink(root / "79", root / "folder-link")  # a folder symlink is neither entered nor listed
    return root


def _expected(entries: list[tuple[str, bytes]]) -> str:
    items = [[name, len(data), hashlib.sha256(data).hexdigest()] for name, data in entries]
    return hashlib.sha256(json.dumps(items, ensure_ascii=False).encode("utf-8")).hexdigest()


EXPECTED_FILES = [
    ("79/79153/a é.xml", b"<a/>\n"),
    ("79/79153/b.xml", b"<b/>"),
    ("79-x.xml", b""),
    ("fhir/Immunization-0001.ndjson", b"{}\n"),
]


def test_a_folder_digest_is_the_sha256_of_its_listing_in_path_order(night):
    assert digest.content_digest(night) == _expected(EXPECTED_FILES)


def test_a_file_and_a_missing_path(night, tmp_path):
    assert digest.content_digest(night / "79-x.xml") == _expected([("79-x.xml", b"")])
    assert digest.content_digest(tmp_path / "missing") == hashlib.sha256(b"[]").hexdigest()
