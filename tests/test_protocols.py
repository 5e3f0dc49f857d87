from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.errors import BenchInputError
from bench.protocols import builtin_names, load_protocol, resolve_protocols

SUITE = {  # type: the design's parameters at severities 1 to 5
    "ct-noise": {"sigma_x_range": [0.01, 0.025, 0.05, 0.075, 0.1]},
    "pet-noise": {"counts_per_suv": [1.0, 0.622, 0.387, 0.241, 0.15]},  # calibrated on seeds 5-9
    "blur": {"pet_fwhm_mm": [2, 3, 4, 6, 8], "ct_slab_mm": [3, 4.5, 6, 8, 10]},
    "misregistration": {"translation_mm": [2, 4, 7, 10, 15], "rotation_deg": [0.5, 1, 2, 3, 5]},
    "suv-calibration": {"factor": [0.95, 0.9, 0.8, 0.7, 0.6]},
    "ct-metal": {"sources": [1, 2, 3, 4, 6], "amplitude_hu": [200, 300, 450, 650, 900]},
}
SUITE_NAMES = [f"{t}-s{k}" for t in SUITE for k in range(1, 6)] + ["missing-pet", "missing-ct"]
EXPECTED = ["center-split", "clean", "loco"] + [f"noisy{p}" for p in range(10, 101, 10)] + SUITE_NAMES


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
        assert p.corruption["pet_counts_per_suv"]["high"] == 0.15 and p.corruption["pet_level"] == "high"
        assert p.version == "2.0" and "0.15 counts/SUV" in p.description
        assert p.train_corruption is None and p.corruption_type is None and p.severity is None
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


def test_suite_protocols_share_clean_and_carry_the_design_parameters():
    clean = load_protocol("clean")
    for name in SUITE_NAMES:
        p = load_protocol(name)
        c = p.corruption
        assert p.split == clean.split and p.metrics == clean.metrics, name
        assert (c["seed"], c["fraction"], c["apply_to"]) == (2022, 1.0, ["test"]) and p.train_corruption is None
        assert c["expected_to_move"] in ("radiomics-cox", "mtv-cox", "none"), name
        if name.startswith("missing-"):
            assert (p.corruption_type, p.severity, c["modality"]) == (name, None, name.split("-")[1])
            continue
        typ, severity = name.rsplit("-s", 1)
        assert (p.corruption_type, p.severity) == (typ, int(severity)) == (c["kind"], c["severity"])
        for key, values in SUITE[typ].items():
            assert c[key] == values[p.severity - 1], (name, key)
    assert load_protocol("pet-noise-s5").corruption["counts_per_suv"] == load_protocol("noisy50").corruption[
        "pet_counts_per_suv"]["high"]


def _suite_text(name: str = "misregistration-s3") -> str:
    from bench.protocols import protocol_text

    text = protocol_text(name).replace(f'name = "{name}"', 'name = "mine"')
    return re.sub(r"\n(# [^\n]*\n)*\[corruption\.effect\][^\[]*", "\n", text)  # without its measured effect


@pytest.mark.parametrize("name, edit, message", [
    ("misregistration-s3", ("severity = 3", "severity = 6"),
     r"corruption\.severity = 6 must be an integer in \[1, 5\]"),
    ("misregistration-s3", ("severity = 3", 'severity = "3"'), r"corruption\.severity = '3'"),
    ("misregistration-s3", ("severity = 3", "severity = 2.5"), r"corruption\.severity = 2\.5"),
    ("misregistration-s3", ("severity = 3", "severity = true"), r"corruption\.severity = True"),
    ("misregistration-s3", ("severity = 3", "sevrity = 3"),
     r"unknown key corruption\.'sevrity' \(did you mean 'severity'\?\)"),
    ("misregistration-s3", ("translation_mm = 7.0", "translation_mm = -7.0"), r"corruption\.translation_mm = -7\.0"),
    ("misregistration-s3", ("translation_mm = 7.0", "translation_mm = nan"), r"corruption\.translation_mm"),
    ("misregistration-s3", ("translation_mm = 7.0", "shift_mm = 7.0"), r"unknown key corruption\.'shift_mm'"),
    ("misregistration-s3", ("rotation_deg = 2.0", ""), r"missing key corruption\.'rotation_deg'"),
    ("misregistration-s3", ('expected_to_move = "radiomics-cox"', ""), r"missing key corruption\.'expected_to_move'"),
    ("misregistration-s3", ('expected_to_move = "radiomics-cox"', 'expected_to_move = ""'),
     r"corruption\.expected_to_move = '' must be a non-empty string"),
    ("misregistration-s3", ('expected_to_move = "radiomics-cox"', "expected_to_move = 3"),
     r"corruption\.expected_to_move = 3"),
    ("misregistration-s3", ('kind = "misregistration"', 'kind = "misregistraton"'),
     r"corruption\.kind = 'misregistraton' .*did you mean 'misregistration'"),
    ("misregistration-s3", ('kind = "misregistration"', 'kind = ["misregistration"]'), r"corruption\.kind = \["),
    ("misregistration-s3", ("[metrics]", "[corruption.effect]\nrho = \"high\"\n\n[metrics]"),
     r"corruption\.effect = .* values must be finite numbers \(rho are not\)"),
    ("misregistration-s3", ("[metrics]", "[corruption.effect]\n\n[metrics]"),
     r"corruption\.effect = \{\} must be a non-empty"),
    ("misregistration-s3", ("fraction = 1.0", "fraction = 0.0"), r"corruption\.fraction = 0\.0"),
    ("ct-metal-s3", ("sources = 3", "sources = 2.5"), r"corruption\.sources = 2\.5 must be an integer"),
    ("ct-noise-s3", ("sigma_x_range = 0.05", "sigma_x_range = 0"),
     r"corruption\.sigma_x_range = 0 must be a number in \(0"),
    ("missing-pet", ('modality = "pet"', 'modality = "mri"'),
     r"corruption\.modality = 'mri' must be one of \['pet', 'ct'\]"),
    ("missing-pet", ('modality = "pet"', 'modality = "pet"\nseverity = 1'), r"unknown key corruption\.'severity'"),
])
def test_bad_suite_files_name_the_file_and_key(tmp_path, name, edit, message):
    text = _suite_text(name)
    assert edit[0] in text
    with pytest.raises(BenchInputError, match=message) as err:
        load_protocol(_write(tmp_path, text.replace(edit[0], edit[1], 1)))
    assert "mine.toml" in str(err.value)


def test_the_measured_effect_is_an_optional_table_of_named_numbers(tmp_path):
    text = _suite_text().replace("[metrics]", "[corruption.effect]\nrho_h_proxy = 0.81\ntumour_cnr = 3\n\n[metrics]")
    p = load_protocol(_write(tmp_path, text))
    assert p.corruption["effect"] == {"rho_h_proxy": 0.81, "tumour_cnr": 3}
    assert p.hash != load_protocol(_write(tmp_path, _suite_text())).hash
    with pytest.raises(BenchInputError, match=r"unknown key corruption\.'effect'"):
        load_protocol(_write(tmp_path, _clean_text().replace("[metrics]", "[corruption.effect]\nx = 1\n\n[metrics]")))


def test_group_names_stand_for_the_shipped_protocols_they_name():
    from bench.protocols import resolve_protocols

    noisy = [p.name for p in resolve_protocols("noisy")]
    assert noisy == [f"noisy{k}" for k in range(10, 101, 10)]
    suite = resolve_protocols("suite")
    assert len(suite) == 32 and {p.corruption_type for p in suite} >= {"blur", "missing-pet", "missing-ct"}
    s135 = resolve_protocols("suite-s135")
    assert len(s135) == 20 and {p.severity for p in s135} == {1, 3, 5, None}
    both = resolve_protocols("clean,suite-s135,suite")  # a protocol named twice counts once
    assert len(both) == 33


def test_suite_files_carry_the_committed_calibration():
    """Each suite protocol's measured effect and named mover are those of the committed calibration result."""
    import json

    result = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results" /
                         "corruption-calibration.json").read_text())
    assert result["pet_noise_counts_per_suv"] == SUITE["pet-noise"]["counts_per_suv"]
    assert sorted(result["effects"]) == sorted(SUITE_NAMES)
    for name in SUITE_NAMES:
        c = load_protocol(name).corruption
        assert c["expected_to_move"] == result["expected_to_move"][name], name
        assert c["effect"] == {k: round(v, 3) for k, v in result["effects"][name].items() if v is not None}, name


def test_the_corruption_docs_quote_the_committed_calibration():
    import json

    root = Path(__file__).resolve().parents[1]
    d = json.loads((root / "benchmarks" / "results" / "corruption-calibration.json").read_text())
    e, doc = d["effects"], (root / "docs" / "corruptions.md").read_text()
    metal = min(e[f"ct-metal-s{k}"][m] for k in range(1, 6) for m in ("rho_pet_volume", "rho_suv_cov", "rho_ct_texture"))
    quoted = [f"ρ(SUV CoV, h) at {e['pet-noise-s5']['rho_h']:.3f} (clean {d['clean']['rho_h']:.3f})",
              f"keeps {e['pet-noise-s1']['rho_h'] / d['clean']['rho_h']:.3f} of the clean ρ",
              f"CT texture ρ {e['ct-noise-s5']['rho_ct_texture']:.2f} at s5", f"SUV CoV {e['pet-noise-s5']['rho_suv_cov']:.2f}",
              f"misregistration (SUV CoV {e['misregistration-s5']['rho_suv_cov']:.2f})",
              f"SUV CoV ρ {e['blur-s5']['rho_suv_cov']:.2f}, CT texture {e['blur-s5']['rho_ct_texture']:.2f}",
              f"PET volume ρ {e['suv-calibration-s5']['rho_pet_volume']:.2f}", f"every ρ ≥ {int(metal * 1000) / 1000:.3f}"]
    for text in quoted:
        assert text in doc, text


def test_the_corruption_docs_quote_the_committed_suite_records_and_diagnosis():
    """docs/corruptions.md 'What the first sweep showed': every paired drop in its table is what the committed
    records give, and the diagnosis numbers are those of its result file."""
    import json
    import re

    from bench.leaderboard import _paired_drop

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "corruptions.md").read_text()
    section = doc.split("## What the first sweep showed", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([\w-]+) \| ([\w-]+) \| ([+-][\d.]+) \| ([+-][\d.]+) – ([+-][\d.]+) \|$", section, re.M)
    assert len(rows) >= 9
    records = root / "leaderboards" / "records" / "synthetic-quick-v3-0"

    def record(protocol, method):
        (path,) = records.glob(f"{protocol}__{method}__*.json")
        return json.loads(path.read_text())

    for method, protocol, *quoted in rows:
        drop = _paired_drop(record("clean", method), record(protocol, method))
        assert [f"{v:+.3f}" for v in drop] == quoted, (method, protocol)
    d = json.loads((root / "benchmarks" / "results" / "radiomics-cox-diagnosis.json").read_text())
    share = d["clean"]["variance_share"]
    ct = [d["protocols"][f"ct-noise-s{k}"]["rho_part_clean"]["ct"] for k in (1, 2, 3)]
    quoted = [f"{share['ct']:.0%} of its variance from CT texture (ρ with the CT latent g {d['clean']['rho_part_g']['ct']:.2f})",
              f"{share['pet']:.0%} from PET texture (ρ with the PET latent h {d['clean']['rho_part_h']['pet']:.2f})",
              f"{share['clinical']:.0%} from clinical inputs and {share['shape']:.0%} from shape",
              f"{ct[0]:.2f}, {ct[1]:.2f}, {ct[2]:.2f} at severities 1–3",
              f"keeps ρ {d['protocols']['pet-noise-s5']['rho_part_clean']['pet']:.2f}",
              f"misregistration-s5: {d['protocols']['misregistration-s5']['rho_part_clean']['pet']:.2f}",
              f"keeps {d['protocols']['pet-noise-s5']['rho_suv_cov_clean']:.2f} "
              f"({d['protocols']['misregistration-s5']['rho_suv_cov_clean']:.2f})"]
    flat = " ".join(section.split())
    for text in quoted:
        assert text.replace("%", " %") in flat, text
