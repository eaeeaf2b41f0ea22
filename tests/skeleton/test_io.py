import pytest

from pefomed.errors import UserError
from pefomed.io import atomic_write, iter_jsonl, write_jsonl


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write('{"id": "half"')
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"id": "a"}])
    write_jsonl(target, [{"id": "b"}, {"id": "c"}])
    assert [row["id"] for _, row in iter_jsonl(target)] == ["b", "c"]


@pytest.mark.parametrize("content, message", [
    (b'{"id": "a"}\n{"id": \n', r"x\.jsonl:2: malformed JSON"),
    (b'{"id": "a"}\n{"v": NaN}\n', r"x\.jsonl:2: malformed JSON"),
    (b'{"id": "\xff"}\n', r"x\.jsonl:1: not UTF-8"),
    (b'[1, 2]\n', r"x\.jsonl:1: expected a JSON object"),
])
def test_jsonl_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        list(iter_jsonl(path))


def test_atomic_write_gives_ordinary_file_permissions(tmp_path):
    import os

    target = tmp_path / "out.json"
    write_jsonl(target, [{"id": "a"}])
    current = os.umask(0)
    os.umask(current)
    assert target.stat().st_mode & 0o777 == 0o666 & ~current
