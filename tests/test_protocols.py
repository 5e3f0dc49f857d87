from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import BenchInputError
from bench.protocols import builtin_names, load_protocol, resolve_protocols

EXPECTED = ["center-split", "clean", "loco"] + [f"noisy{p}" for p in range(10, 101, 10)]


def test_every_shipped_protocol_parses():
    assert sorted(builtin_names()) == sorted(EXPECTED)
    for name in EXPECTED:
        p = load_protocol(name)
        assert p.name == name and p.version and p.description
        assert len(p.hash) == 16


def test_noisy_protocols_share_the_clean_folds_and_are_test_side_only():
    clean = load_protocol("clean")
    for pct in range(10, 101, 10):
        p = load_protocol(f"noisy{pct}")
        assert p.split_hash == clean.split_hash
        assert p.corruption["fraction"] == pytest.approx(pct / 100)
        assert p.corruption["ct_sigma"]["high"] == 0.1 and p.corruption["ct_level"] == "high"
        assert p.train_corruption is None
    assert len({load_protocol(n).hash for n in EXPECTED}) == len(EXPECTED)


def test_center_split_is_the_adamss_setting():
    p = load_protocol("center-split")
    assert p.split["train_centres"] == ["CHUP", "CHUS", "HGJ", "HMR", "MDA"]
    assert p.split["test_centres"] == ["CHUM", "CHUV"]


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return str(path)


def _clean_text() -> str:
    from bench.protocols import protocol_text

    return protocol_text("clean")


def test_user_protocol_file_and_hash_ignores_comments(tmp_path):
    text = _clean_text().replace('name = "clean"', 'name = "mine"')
    a = load_protocol(_write(tmp_path, text))
    b = load_protocol(_write(tmp_path, text + "\n# a comment\n"))
    assert a.name == "mine" and a.hash == b.hash
    c = load_protocol(_write(tmp_path, text.replace("n_folds = 5", "n_folds = 3")))
    assert c.hash != a.hash and c.split_hash != a.split_hash


@pytest.mark.parametrize(
    "edit, message",
    [
        (("n_folds = 5", "n_folds = 5\nshuffle = true"), r"unknown key split\.'shuffle'"),
        (("kind = \"kfold\"", "kind = \"bootstrap\""), r"split\.kind = 'bootstrap'"),
        (("n_folds = 5", "n_folds = 1"), r"split\.n_folds = 1 must be an integer in \[2, 100\]"),
        (("n_folds = 5", "n_folds = \"5\""), r"split\.n_folds"),
        (("val_fraction = 0.2", "val_fraction = 0.9"), r"split\.val_fraction"),
        (("bootstrap = 1000", "bootstrap = -1"), r"metrics\.bootstrap"),
        (("primary = \"cindex_td\"", "primary = \"accuracy\""), r"metrics\.primary"),
        (("version = \"1.0\"\n", ""), r"missing key 'version'"),
        (("[corruption]\nkind = \"none\"", "[corruption]\nkind = \"none\"\nfraction = 0.5"), r"corruption\.'fraction'"),
        (("stratify = [\"event\", \"centre\"]", "stratify = [\"event\", \"site\"]"), r"split\.stratify"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path, edit, message):
    text = _clean_text()
    assert edit[0] in text
    path = _write(tmp_path, text.replace(edit[0], edit[1], 1))
    with pytest.raises(BenchInputError, match=message) as err:
        load_protocol(path)
    assert "mine.toml" in str(err.value)


def test_noise_levels_must_be_named_numbers(tmp_path):
    from bench.protocols import protocol_text

    text = protocol_text("noisy50").replace("medium = 20.0, ", "")
    with pytest.raises(BenchInputError, match="pet_counts_per_suv"):
        load_protocol(_write(tmp_path, text))


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(BenchInputError, match="not valid TOML"):
        load_protocol(_write(tmp_path, "name = [unclosed"))
    with pytest.raises(BenchInputError, match="does not exist"):
        load_protocol(str(tmp_path / "nope.toml"))


def test_unknown_protocol_name_suggests():
    with pytest.raises(BenchInputError, match="did you mean 'noisy50'"):
        load_protocol("noisy55")
    assert [p.name for p in resolve_protocols("clean, noisy50,clean")] == ["clean", "noisy50"]


@pytest.mark.parametrize("edit, message", [
    (("seed = 2022", "seed = 99999999999999999"), r"split\.seed"),
    (('name = "mine"', 'name = " "'), r"name = ' ' must be a non-empty string"),
    (("horizons_years = [1, 2, 3, 5]", "horizons_years = [1, inf]"), r"metrics\.horizons_years"),
    (("bootstrap = 1000", "bootstrap = 10000000000000000"), r"metrics\.bootstrap"),
])
def test_out_of_range_values(tmp_path, edit, message):
    text = _clean_text().replace('name = "clean"', 'name = "mine"')
    with pytest.raises(BenchInputError, match=message):
        load_protocol(_write(tmp_path, text.replace(*edit, 1)))


def test_non_utf8_file_and_shadowing_file_in_cwd(tmp_path, monkeypatch):
    bad = tmp_path / "latin.toml"
    bad.write_bytes(b"\xff\xfe name")
    with pytest.raises(BenchInputError, match="UTF-8"):
        load_protocol(str(bad))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clean").write_text("notes, not a protocol")
    assert load_protocol("clean").source == "builtin:clean"
