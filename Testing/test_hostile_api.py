"""Issue 17 items 8-10 on the API and CLI: results of one volume are never replaced by another's,
weights errors say what is really wrong (and never suggest unpickling), broken model cards are
refused naming the key, and the CLI prints messages, not tracebacks."""
from __future__ import annotations

import json
import shutil

import pytest
import SimpleITK as sitk

from LUnetSegmentationLib.apps import cli
from LUnetSegmentationLib.runtime.preprocess import InputError
from LUnetSegmentationLib.runtime.weights import WeightsError, find_model

pytest.importorskip("torch")


def test_results_of_another_volume_are_not_replaced(mrml_scene, hippocampus_dir):
    from LUnetSegmentationLib.slicer_adapter import mrml
    from LUnetSegmentationLib import segment

    first = mrml.imageToVolumeNode(mrml_scene.scene, sitk.ReadImage(str(hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz")), "first")
    second = mrml.imageToVolumeNode(mrml_scene.scene, sitk.ReadImage(str(hippocampus_dir / "imagesTr" / "hippocampus_011.nii.gz")), "second")
    node = segment(first, device="cpu")
    before = sorted(mrml.own_segment_ids(node))
    with pytest.raises(InputError, match="holds results computed for volume 'first'"):
        segment(second, node, device="cpu")
    with pytest.raises(InputError, match="holds results computed for volume 'first'"):
        mrml.check_segmentation_node(node, second)  # the check every path (console, panel's child) runs
    assert sorted(mrml.own_segment_ids(node)) == before
    assert node.GetAttribute("LUnetSegmentation.InputVolumeID") == first.GetID()
    segment(first, node, device="cpu")  # the same volume again: replaced as before


def _card_copy(tmp_path, change):
    card = find_model("hippocampus-lunet")
    data = json.loads(card.path.read_text())
    change(data)
    shutil.copy(card.weights_path, tmp_path / card.weights_path.name)
    path = tmp_path / "card.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("change, named", [
    (lambda d: d.pop("weights"), "'weights' is missing"),
    (lambda d: d.update(labels="Hippocampus"), "'labels' must be a list"),
    (lambda d: d["labels"][0].update(value="1"), "labels[0] needs an integer"),
])
def test_broken_cards_are_refused_naming_the_key(tmp_path, change, named, capsys):
    path = _card_copy(tmp_path, change)
    with pytest.raises(WeightsError, match=named.replace("[", r"\[").replace("]", r"\]")):
        find_model(str(path))
    image = tmp_path / "crop.nii.gz"
    sitk.WriteImage(sitk.Image([40, 40, 40], sitk.sitkFloat32) + 1, str(image))
    assert cli.main(["segment", str(image), "--out", str(tmp_path / "out"), "--model", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "is not usable" in err


class Payload:
    """Any Python object: a weights file holding one must not be unpickled."""


def test_pickled_weights_are_refused_without_unpickling_advice(tmp_path, monkeypatch):
    import torch

    from LUnetSegmentationLib.runtime import weights

    card = find_model("hippocampus-lunet")
    data = json.loads(card.path.read_text())
    pickled = tmp_path / card.weights_path.name
    torch.save({"object": Payload()}, pickled)
    data["weights"]["sha256"] = weights.sha256sum(pickled)
    path = tmp_path / "card.json"
    path.write_text(json.dumps(data))
    with pytest.raises(WeightsError) as error:
        weights.load_state_dict(find_model(str(path)))
    assert "weights_only=False" not in str(error.value) and "never loaded" in str(error.value)


def test_missing_weights_say_missing(tmp_path):
    from LUnetSegmentationLib.runtime import weights

    card = find_model("hippocampus-lunet")
    shutil.copy(card.path, tmp_path / card.path.name)  # the card without its weights
    with pytest.raises(WeightsError, match="is missing") as error:
        weights.load_network(find_model(str(tmp_path / card.path.name)))
    assert "do not fit" not in str(error.value)


def test_evaluate_unknown_case_is_a_message(hippocampus_dir, tmp_path, capsys):
    code = cli.main(["evaluate", "--data", str(hippocampus_dir.parent if hippocampus_dir.name == "imagesTr" else hippocampus_dir),
                     "--cases", "hippocampus_999", "--out", str(tmp_path / "r.json"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "Cases not found" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- issue 24: what the API is given


@pytest.mark.parametrize("given, advice", [
    (lambda: __import__("numpy").zeros((20, 20, 20), "float32"), r"not a numpy\.ndarray: .*slicer\.util\.addVolumeFromArray"),
    (lambda: "MRHead", r"not its name or path 'MRHead': .*segment\(getNode\('MRHead'\)\)"),
    (lambda: sitk.Image([20, 20, 20], sitk.sitkFloat32), r"not a SimpleITK\.SimpleITK\.Image: .*PushVolumeToSlicer"),
    (lambda: __import__("pathlib").Path("scan.nii.gz"), r"segmentFiles\('scan\.nii\.gz', outputDir\)"),
    (lambda: 3.5, r"needs a Slicer scalar volume node, not a builtins\.float"),
], ids=["numpy", "name", "sitk", "path", "number"])
def test_segment_given_no_node_says_what_to_pass(given, advice):
    """Each of these raised AttributeError while the refusal was being built."""
    from LUnetSegmentationLib import segment

    with pytest.raises(TypeError, match=advice):
        segment(given())


def test_segment_with_a_model_of_the_wrong_type_says_what_a_model_is(mrml_scene, hippocampus_dir):
    from LUnetSegmentationLib import segment
    from LUnetSegmentationLib.slicer_adapter import mrml

    volume = mrml.imageToVolumeNode(mrml_scene.scene, sitk.ReadImage(str(hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz")), "crop")
    with pytest.raises(TypeError, match=r"model must be a shipped model id .* not a int \(123\)"):
        segment(volume, model=123)
    with pytest.raises(TypeError, match=r"segmentationNode must be a segmentation node or None, not a str"):
        segment(volume, "Segmentation")


def test_segment_files_takes_one_string_as_one_path(tmp_path, hippocampus_dir):
    """A single path was iterated character by character ("No such input file: o, n, e, /...")."""
    from LUnetSegmentationLib import segmentFiles

    with pytest.raises(InputError, match=r"No such input file: one/path\. Nothing was done"):
        segmentFiles("one/path", tmp_path / "none")
    rows = segmentFiles(str(hippocampus_dir / "imagesTr" / "hippocampus_001.nii.gz"), tmp_path / "out", device="cpu")
    assert [row["status"] for row in rows] == ["ok"] and (tmp_path / "out" / "hippocampus_001.seg.nrrd").is_file()


@pytest.mark.parametrize("given, advice", [
    (123, r"inputPaths must be a file path or a list of file paths, not a int"),
    ([123], r"inputPaths must hold file paths .* it holds a int"),
    ([], r"inputPaths is empty"),
    (b"scan.nii.gz", r"inputPaths must be a str path \(decode the bytes first\)"),
])
def test_segment_files_refuses_what_is_no_path(tmp_path, given, advice):
    from LUnetSegmentationLib import segmentFiles

    with pytest.raises((TypeError, ValueError), match=advice):
        segmentFiles(given, tmp_path / "out")
    assert not (tmp_path / "out").exists()
