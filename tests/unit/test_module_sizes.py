"""``tools/module_sizes.py``: the modules of the packages and their line counts, at a revision or on disk."""

from __future__ import annotations

from tools.module_sizes import ROOT, main, sizes


def test_sizes_count_lines_of_every_package_module(capsys) -> None:
    on_disk = sizes(None)
    assert on_disk["clients/cache.py"] == (ROOT / "clients" / "cache.py").read_bytes().count(b"\n")
    assert all(p.split("/")[0] in ("taskgram", "indexer", "service", "clients") for p in on_disk)
    assert not any(p.startswith(("tests/", "bench/", "tools/")) for p in on_disk)
    # at a revision: what git stores (this commit's files, whatever the working tree holds)
    at_head = sizes("HEAD")
    assert at_head["taskgram/__init__.py"] > 0 and "clients/client.py" in at_head
    assert main(["HEAD"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"HEAD: {len(at_head)} modules, {sum(at_head.values()):,} lines"
