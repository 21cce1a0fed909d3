import pytest
import torch
import torchvision

from geoguesser.errors import UserError
from geoguesser.model.backbones import backbone_blocks, build_backbone, feature_size


def test_torchvision_backbone_loses_its_classifier_and_reports_its_feature_size():
    backbone = build_backbone("resnet18")
    assert feature_size(backbone, 32) == 512
    assert backbone(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    assert [type(b).__name__ for b in backbone_blocks(backbone)][-2:] == [
        "Sequential",
        "Sequential",
    ]


def test_tiny_backbone_for_cpu_work():
    backbone = build_backbone("tinycnn")
    assert feature_size(backbone, 32) == 128
    assert len(backbone_blocks(backbone)) == 8


def test_unknown_backbone_and_impossible_image_size_are_user_errors():
    with pytest.raises(UserError, match="unknown backbone 'resnet9000'"):
        build_backbone("resnet9000")
    with pytest.raises(UserError, match="vit_b_16 cannot take 32 px images"):
        feature_size(build_backbone("vit_b_16"), 32, "vit_b_16")


def test_local_weights_file_is_loaded(tmp_path):
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    loaded = build_backbone("resnet18", weights=str(path))
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)
    with pytest.raises(UserError, match="does not fit resnet18"):
        torch.save({"conv1.weight": source.conv1.weight}, tmp_path / "partial.pth")
        build_backbone("resnet18", weights=str(tmp_path / "partial.pth"))
    with pytest.raises(UserError, match="weights file not found"):
        build_backbone("resnet18", weights=str(tmp_path / "nope.pth"))


def test_offline_download_failure_says_how_to_pass_a_local_file(monkeypatch):
    def offline(self, *args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(UserError, match="pass its path as weights"):
        build_backbone("resnet18", weights="imagenet")
