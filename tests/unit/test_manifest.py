"""The artifact's list of files: written, read back, compared; only plain names listed."""

from __future__ import annotations

import pytest

from workers import manifest

A = "a" * 64
B = "b" * 64


def _entries() -> list[manifest.Entry]:
    return [manifest.file("dist/app.txt", 0o644, 3, A), manifest.folder("dist"),
            manifest.link("dist/latest", "app.txt"), manifest.file("dist/run", 0o755, 9, B)]


def test_a_list_reads_back_as_written_sorted_by_path() -> None:
    data = manifest.render(_entries())
    assert data.decode().splitlines() == [
        "conveyor-files 1", "d\t755\t-\t-\tdist", f"f\t644\t3\t{A}\tdist/app.txt",
        "l\t777\t-\tapp.txt\tdist/latest", f"f\t755\t9\t{B}\tdist/run"]
    assert manifest.parse(data) == sorted(_entries(), key=lambda e: e.path)
    assert manifest.total_size(manifest.parse(data)) == 12


@pytest.mark.parametrize("name", ["dist/a b", "dist/../x", "/abs", "dist//x", "./x", "a\tb",
                                  "dist/é", "x/", ""])
def test_names_that_are_not_plain_are_not_listed(name: str) -> None:
    assert not manifest.plain(name)
    with pytest.raises(manifest.ManifestError):
        manifest.render([manifest.file(name, 0o644, 1, A)])


def test_link_targets_may_climb_but_not_be_absolute_or_odd() -> None:
    assert manifest.plain_target("../lib/x.so")
    assert not manifest.plain_target("/etc/passwd")
    assert not manifest.plain_target("a b")
    assert not manifest.listable([manifest.link("dist/l", "/etc")])


@pytest.mark.parametrize("data", [
    b"", b"conveyor-files 2\n", b"conveyor-files 1\nf\t644\t3\tnothex\tdist/x\n",
    b"conveyor-files 1\nf\t600\t3\t" + A.encode() + b"\tdist/x\n",
    b"conveyor-files 1\nd\t755\t-\t-\tb\nd\t755\t-\t-\ta\n",
    b"conveyor-files 1\nd\t755\t-\t-\ta\nd\t755\t-\t-\ta\n",
    b"conveyor-files 1\nd\t755\t-\t-\ta",  # cut short: no final newline
])
def test_what_is_not_a_list_is_refused(data: bytes) -> None:
    with pytest.raises(manifest.ManifestError):
        manifest.parse(data)


def test_changed_names_the_files_whose_content_size_or_mode_differ() -> None:
    old = _entries()
    new = [manifest.file("dist/app.txt", 0o644, 3, B), manifest.folder("dist"),
           manifest.file("dist/run", 0o644, 9, B), manifest.file("dist/new", 0o644, 1, A),
           manifest.link("dist/latest", "run")]
    assert [e.path for e in manifest.changed(new, old)] == ["dist/app.txt", "dist/run",
                                                             "dist/new"]
    assert manifest.changed(old, old) == []
