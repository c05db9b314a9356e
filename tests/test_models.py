"""The model zoo: every registered model (including ones added later) is forward- and
backward-tested at 28×28 and at a digit-sum-like 28×112, plus the registry's contract,
temperatures, head replacement and loading ImageNet weights from a local file."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from charlab.compat import tv_models
from charlab.errors import CharlabError, UnknownNameError
from charlab.models import (
    body_parameters, count_parameters, create_model, head_parameters, list_models, model_info, register_model,
    inference_copy, replace_head,
)

SHAPES = [(28, 28), (28, 112)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batch-2 passes gain nothing from 2 threads, and on a shared busy machine OpenMP's
    spinning made them 3-5× slower (this file: 123 s at 2 threads vs 35 s at 1, load 10)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("hw", SHAPES, ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name, hw):
    if hw[0] != hw[1] and not model_info(name)["supports_non_square"]:
        pytest.skip(f"{name} declares supports_non_square=False")
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=1, image_size=hw)
    maps = []
    hook = model.cam_layer.register_forward_hook(lambda mod, args, out: maps.append(out))
    x = torch.rand(2, 1, *hw)  # batch 2 keeps resnet50 cheap and still lets BatchNorm train
    logits = model(x)
    hook.remove()
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 7
    assert len(maps) == 1 and maps[0].dim() == 4 and maps[0].shape[0] == 2  # N×C×h×w for Grad-CAM
    F.cross_entropy(logits, torch.tensor([0, 6])).backward()
    first = next(p for p in model.parameters() if p.dim() == 4)  # the first conv's weight
    assert first.grad is not None and torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0
    assert model.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_with_side_inputs(name):
    """Every registered model's head also takes the side vector (DataConfig.side_inputs) and
    learns from it; without the vector it refuses in words."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=1, image_size=28, side_inputs="box")
    plain = create_model(name, num_classes=7, in_chans=1, image_size=28)
    assert model.side_dim == 5 and model.head.in_features == plain.head.in_features + 32
    x, side = torch.rand(2, 1, 28, 28), torch.rand(2, 5)
    logits = model(x, side)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 6])).backward()
    side_first = model.side_net[2].weight  # the side vector's first Linear (after its noise and BatchNorm)
    assert side_first.grad is not None and side_first.grad.abs().sum() > 0
    assert next(p for p in model.parameters() if p.dim() == 4).grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():  # the side vector changes the answer: it is read, not ignored
        assert not torch.allclose(model(x, side), model(x, side + 1.0))
        with pytest.raises(CharlabError, match="side inputs"):
            model(x)
        with pytest.raises(CharlabError, match="no side inputs"):
            plain.eval()(x, side)


def test_an_optional_side_vector_is_dropped_in_training_and_may_be_left_out():
    """side_dropout: a "present" flag joins the vector, training zeroes that share of the rows
    (flag included: what an image without a page gives), and model(x) reads the image alone."""
    from charlab.models._layers import SideNoise

    torch.manual_seed(0)
    model = create_model("charnet", num_classes=7, in_chans=1, image_size=28, side_inputs="box", side_dropout=0.25)
    assert model.side_net[2].in_features == 6  # 5 numbers and the flag
    noise = SideNoise("box", 0.25).train()
    rows = torch.cat([torch.rand(4000, 5) + 0.1, torch.ones(4000, 1)], dim=1)  # N×6, all present
    dropped = (noise(rows).abs().sum(1) == 0).float().mean().item()
    assert 0.22 < dropped < 0.28
    assert torch.equal(noise.eval()(rows), rows)  # no noise and no dropping at prediction
    model.eval()
    x, side = torch.rand(3, 1, 28, 28), torch.rand(3, 5)
    with torch.no_grad():
        alone, read = model(x), model(x, side)
        assert alone.shape == (3, 7) and torch.isfinite(alone).all() and not torch.allclose(alone, read)
        zeros = torch.cat([model.neck(model.pool(model.features(x)).flatten(1)),
                           model.side_net(torch.zeros(3, 6))], dim=1)
        assert torch.allclose(alone, model.head(zeros))  # left out = the all-zeros row it was trained on



@pytest.mark.parametrize("name", list_models())
def test_inference_copy_gives_the_models_logits(name):
    """The copy bulk prediction runs (BatchNorm folded into its conv, channels_last) answers as the
    model does, with trained (non-trivial) BatchNorm statistics, and leaves the model untouched."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=1, image_size=28)
    for mod in model.modules():  # statistics and affine terms far from their initial 0/1
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(mod.weight, 0.5, 1.5)
            nn.init.uniform_(mod.bias, -0.2, 0.2)
    model.eval()
    bns = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    fast = inference_copy(model)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        want, got = model(x), fast(x)
    assert torch.allclose(got, want, rtol=1e-3, atol=1e-4), (got - want).abs().max()
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == bns  # the model is not folded
    if name == "charnet":  # its conv_bn_act blocks are Sequentials: every BatchNorm is folded away
        assert bns > 0 and not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())

@pytest.mark.parametrize("name", list_models())
def test_model_info_reports_params_and_provenance(name):
    info = model_info(name)
    assert info["name"] == name and info["description"] and isinstance(info["kwargs"], dict)
    assert info["params_62x28"] > 0 and isinstance(info["supports_non_square"], bool)
    assert info["report"]  # every zoo model says which report it reproduces


def test_param_counts_match_hand_computed():
    # lenet: conv 6·25+6, BN 12, conv 16·6·25+16, BN 32, fc 256·256 (no bias: BN follows), BN 512,
    # fc 256·128, BN 256, head 128·62+62
    assert model_info("lenet")["params_62x28"] == 156 + 12 + 2416 + 32 + 65536 + 512 + 32768 + 256 + 7998
    # seed36: conv 16·9+16; res 2·16·16·9 + 2 BN·32; conv 32·16·9+32; res 2·32·32·9 + 2 BN·64;
    # conv 64·32·9+64; fc 576·500+500 (64×3×3 at 28×28); head 500·62+62
    assert model_info("seed36_resnet")["params_62x28"] == (
        160 + (4608 + 64) + 4640 + (18432 + 128) + 18496 + 288500 + 31062)
    assert count_parameters(create_model("lenet", 62)) == model_info("lenet")["params_62x28"]


def test_unknown_name_lists_valid_models():
    with pytest.raises(UnknownNameError) as e:
        create_model("lenet5000", num_classes=10)
    assert "lenet5000" in str(e.value) and "kaggle_cnn" in str(e.value) and "resnet18" in str(e.value)
    with pytest.raises(UnknownNameError):
        model_info("nope")


def test_bad_options_say_what_the_model_takes():
    with pytest.raises(CharlabError, match="activation") as e:
        create_model("lenet", 10, actvation="mish")
    assert "actvation" in str(e.value) and "temperature" in str(e.value)
    with pytest.raises(CharlabError, match="relu, mish"):
        create_model("lenet", 10, activation="tanh")
    with pytest.raises(CharlabError, match="temperature"):
        create_model("kaggle_cnn", 10, temperature=0)
    with pytest.raises(CharlabError, match="stem"):
        create_model("resnet18", 10, stem="huge")
    with pytest.raises(CharlabError, match="num_classes"):
        create_model("lenet", 0)
    with pytest.raises(CharlabError, match="image_size"):
        create_model("lenet", 10, image_size=(28, 28, 28))
    with pytest.raises(CharlabError, match="image_size"):
        create_model("lenet", 10, image_size=28.0)
    # Integers from label arithmetic or a shape (numpy, torch.Size) are fine.
    assert create_model("lenet", np.int64(3), image_size=torch.Size([28, 56])).head.out_features == 3
    with pytest.raises(CharlabError, match="too small"):
        create_model("kaggle_cnn", 10, image_size=16)
    # ModelConfig.pretrained is None by default and passed through for every model.
    assert isinstance(create_model("lenet", 10, pretrained=None), nn.Module)
    with pytest.raises(CharlabError, match="no option pretrained"):
        create_model("lenet", 10, pretrained="/weights.pth")


def test_duplicate_or_malformed_registration_fails():
    with pytest.raises(ValueError, match="already registered"):
        @register_model
        def lenet(num_classes, in_chans=1, image_size=28):  # noqa: F811 - the duplicate is the point
            return nn.Linear(1, 1)
    assert model_info("lenet")["kwargs"]["activation"] == "relu"  # the original survived
    with pytest.raises(TypeError, match="num_classes, in_chans, image_size"):
        register_model(lambda classes: None, name="bad_signature")
    assert "bad_signature" not in list_models()
    assert list_models("resnet*") == ["resnet18", "resnet50"]


def test_temperature_divides_logits():
    x = torch.rand(3, 1, 28, 28)
    outs = {}
    for t in (1.0, 4.0):
        torch.manual_seed(0)
        outs[t] = create_model("lenet", 5, temperature=t).eval()(x)
    torch.testing.assert_close(outs[4.0] * 4, outs[1.0])
    torch.manual_seed(0)
    k5 = create_model("kaggle_cnn", 5).eval()  # the report's temperature 5 is the default
    torch.manual_seed(0)
    k1 = create_model("kaggle_cnn", 5, temperature=1.0).eval()
    torch.testing.assert_close(k5(x) * 5, k1(x))


def test_lenet_mish_variant_and_activation_option_agree():
    torch.manual_seed(0)
    a = create_model("lenet_mish", 10)
    torch.manual_seed(0)
    b = create_model("lenet", 10, activation="mish")
    assert any(isinstance(m, nn.Mish) for m in a.modules())
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_other_input_sizes_reach_the_same_head():
    # Built for 28×28 (the report's fc sizes); adaptive pooling lets 32×40 through unchanged.
    model = create_model("seed36_resnet", 10).eval()
    assert model(torch.rand(2, 1, 32, 40)).shape == (2, 10)


def test_resnet_stems_set_the_feature_map_size():
    sizes = {}
    for stem in ("pool", "small", "imagenet"):
        model = create_model("resnet18", 10, stem=stem).eval()
        maps = []
        model.cam_layer.register_forward_hook(lambda mod, args, out: maps.append(out.shape[-2:]))
        model(torch.rand(1, 1, 28, 28))
        sizes[stem] = tuple(maps[0])
    assert sizes == {"pool": (2, 2), "small": (4, 4), "imagenet": (1, 1)}  # 28 -> /14, /7, /28


def test_replace_head_and_freezing():
    model = create_model("lenet", 62)
    body_before = [p for p in body_parameters(model)]
    replace_head(model, 10)
    assert model.head.in_features == 128 and model.head.out_features == 10 and model.num_classes == 10
    assert [p for p in body_parameters(model)] == body_before  # same Parameter objects, untouched
    head = list(head_parameters(model))
    assert {id(p) for p in head} == {id(p) for p in model.head.parameters()}
    assert len(body_before) + len(head) == len(list(model.parameters()))
    for p in body_parameters(model):
        p.requires_grad_(False)
    F.cross_entropy(model(torch.rand(4, 1, 28, 28)), torch.tensor([0, 1, 2, 9])).backward()
    assert all(p.grad is None for p in body_parameters(model)) and model.head.weight.grad is not None
    assert count_parameters(model, trainable_only=True) == 128 * 10 + 10


def test_checkpoint_round_trip_rebuilds_model(tmp_path):
    from charlab.checkpoint import load_checkpoint, save_checkpoint
    from charlab.config import ModelConfig, TrainConfig

    cfg = TrainConfig(model=ModelConfig(name="lenet", kwargs={"activation": "mish", "temperature": 2.0}))
    model = create_model("lenet", 3, image_size=(28, 56), **cfg.model.kwargs).eval()
    save_checkpoint(tmp_path / "m.pt", model, cfg, ["a", "b", "c"], (28, 56))
    ck = load_checkpoint(tmp_path / "m.pt")
    x = torch.rand(2, 1, 28, 56)
    torch.testing.assert_close(ck.model(x), model(x))
    assert ck.model.temperature == 2.0


@pytest.fixture(scope="module")
def resnet18_imagenet_file(tmp_path_factory):
    """A torchvision resnet18 state_dict (random, seeded) standing in for the ImageNet file."""
    torch.manual_seed(1)
    state = tv_models().resnet18(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18-imagenet.pth"
    torch.save(state, path)
    return path, state


def test_pretrained_resnet_from_local_file(resnet18_imagenet_file, tmp_path):
    path, src = resnet18_imagenet_file
    full = create_model("resnet18", 10, stem="imagenet", pretrained=str(path))
    own = full.state_dict()
    # RGB conv1 summed to one channel: same response to a grey image.
    torch.testing.assert_close(own["features.conv1.weight"], src["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(own["features.layer3.1.conv2.weight"], src["layer3.1.conv2.weight"])
    torch.testing.assert_close(own["features.bn1.running_var"], src["bn1.running_var"])
    assert full.pretrained_info["skipped"] == [] and full.pretrained_info["loaded"] == len(src) - 2  # not fc.*

    small = create_model("resnet18", 10, pretrained=str(path))  # 3×3 stem: conv1/bn1 stay fresh
    assert small.state_dict()["features.conv1.weight"].shape == (64, 1, 3, 3)
    assert "features.conv1.weight" in small.pretrained_info["skipped"]
    torch.testing.assert_close(small.state_dict()["features.layer4.0.downsample.0.weight"],
                               src["layer4.0.downsample.0.weight"])
    assert small(torch.rand(2, 1, 28, 28)).shape == (2, 10)

    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": src}, wrapped)  # a training-script checkpoint wrapping the weights
    assert create_model("resnet18", 10, pretrained=str(wrapped)).pretrained_info["loaded"] > 0


def test_pretrained_errors_are_charlab_errors(resnet18_imagenet_file, tmp_path):
    path, _ = resnet18_imagenet_file
    with pytest.raises(CharlabError, match="not found"):
        create_model("resnet18", 10, pretrained=str(tmp_path / "absent.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CharlabError, match="not a readable"):
        create_model("resnet18", 10, pretrained=str(junk))
    with pytest.raises(CharlabError, match="does not fit resnet50"):
        create_model("resnet50", 10, pretrained=str(path))


def test_pretrained_efficientnet_stem_summed(tmp_path):
    torch.manual_seed(2)
    src = tv_models().efficientnet_b0(weights=None).state_dict()
    torch.save(src, tmp_path / "b0.pth")
    model = create_model("efficientnet_b0", 10, pretrained=str(tmp_path / "b0.pth"))
    torch.testing.assert_close(model.state_dict()["features.0.0.weight"],
                               src["features.0.0.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(model.state_dict()["features.8.1.running_mean"], src["features.8.1.running_mean"])


def test_cli_models_lists_the_zoo(capsys):
    import json

    from charlab.__main__ import main

    assert main(["models", "lenet*", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in infos] == ["lenet", "lenet_mish"] and infos[0]["params_62x28"] == 109686
    assert main(["models", "nothing*"]) == 2
    assert "no model matches" in capsys.readouterr().err
