"""transforms.core.digest.content_digest: the streamed digest of a folder is the SHA-256 of the JSON
list [[relative path, size, sha256], ...] in Path order, whatever the round size."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

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


def _reads(monkeypatch) -> list[str]:
    """The files content_digest opens to hash, by name."""
    opened: list[str] = []
    real = hashlib.file_digest

    def counting(f, name):
        opened.append(os.path.basename(f.name))
        return real(f, name)

    monkeypatch.setattr(digest.hashlib, "file_digest", counting)
    return opened


def test_with_a_memo_the_digest_is_the_same_and_an_unchanged_file_is_not_read_again(
    night, tmp_path, monkeypatch
):
    memo = tmp_path / "cache" / "night.sqlite"
    monkeypatch.setattr(digest.DigestMemo, "RACY_NS", 0)  # files written just now count as settled
    opened = _reads(monkeypatch)
    plain = digest.content_digest(night)
    assert digest.content_digest(night, memo) == plain == _expected(EXPECTED_FILES)
    assert oct(memo.stat().st_mode & 0o777) == "0o600"
    opened.clear()
    assert digest.content_digest(night, memo) == plain
    assert opened == []  # nothing read: every file's stat is as remembered


def test_a_file_changed_behind_an_unchanged_size_and_mtime_is_read_again(night, tmp_path, monkeypatch):
    """Content cannot change without changing ctime (utime sets mtime, never ctime)."""
    memo = tmp_path / "night.sqlite"
    monkeypatch.setattr(digest.DigestMemo, "RACY_NS", 0)
    digest.content_digest(night, memo)
    path = night / "79" / "79153" / "b.xml"
    before = path.stat()
    path.write_bytes(b"<c/>")  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime put back
    opened = _reads(monkeypatch)
    changed = [(n, b"<c/>" if n == "79/79153/b.xml" else d) for n, d in EXPECTED_FILES]
    assert digest.content_digest(night, memo) == _expected(changed)
    assert opened == ["b.xml"]


def test_a_file_changed_just_before_it_was_read_is_not_remembered(night, tmp_path, monkeypatch):
    """ "Racy git": a file written within DigestMemo.RACY_NS of its read may change again without
    its ctime moving on a coarse clock, so it is read again next time."""
    memo = tmp_path / "night.sqlite"
    digest.content_digest(night, memo)  # every file of the fixture was written just now
    opened = _reads(monkeypatch)
    assert digest.content_digest(night, memo) == _expected(EXPECTED_FILES)
    assert sorted(opened) == sorted(os.path.basename(n) for n, _ in EXPECTED_FILES)


def test_a_damaged_or_foreign_memo_is_ignored_and_replaced(night, tmp_path, monkeypatch):
    monkeypatch.setattr(digest.DigestMemo, "RACY_NS", 0)
    memo = tmp_path / "night.sqlite"
    memo.write_bytes(b"not a database")
    assert digest.content_digest(night, memo) == _expected(EXPECTED_FILES)
    other = tmp_path / "other"  # the same names under another folder: its memo is not this one's
    shutil.copytree(night, other, symlinks=True)
    (other / "79-x.xml").write_bytes(b"x")
    opened = _reads(monkeypatch)
    assert digest.content_digest(other, memo) != _expected(EXPECTED_FILES)
    assert len(opened) == len(EXPECTED_FILES)  # every file read: the memo named another root
