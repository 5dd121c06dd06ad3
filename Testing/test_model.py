"""The network: shapes for any input size, 2D and 3D, and parameter counts against the paper."""
import pytest
import torch

from LUnetSegmentationLib.runtime.model import LUnet, NetworkConfig, Unet, build_network, count_parameters


@pytest.mark.parametrize("shape", [(35, 51, 35), (17, 9, 40), (16, 16, 16)])
def test_3d_output_matches_any_input_size(shape):
    net = LUnet(num_classes=3, levels=4, width=4).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, *shape))
    assert out.shape == (2, 3, *shape)


def test_2d_variant():
    net = Unet(num_classes=2, levels=3, width=4, spatial_dims=2).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 37, 21))
    assert out.shape == (1, 2, 37, 21)
    assert all(not isinstance(m, torch.nn.Conv3d) for m in net.modules())


def test_paper_parameter_counts():
    # Paper (Hassler et al.): standard Unet 4-8-16-32-64, binary -> 354k; LUnet width 4 -> 10.7k.
    unet = count_parameters(Unet(num_classes=2, levels=5, convs_per_level=2, width=4))
    lunet = count_parameters(LUnet(num_classes=2, levels=5, convs_per_level=2, width=4))
    assert abs(unet - 354_000) / 354_000 < 0.01
    assert abs(lunet - 10_700) / 10_700 < 0.1
    assert unet / lunet > 30  # the paper's headline: over 30x fewer parameters


def test_lunet_width_is_constant_and_unet_doubles():
    assert NetworkConfig(architecture="LUnet", width=8, levels=4).level_channels() == [8, 8, 8, 8]
    assert NetworkConfig(architecture="Unet", width=8, levels=4).level_channels() == [8, 16, 32, 64]


def test_block_order_is_conv_relu_batchnorm_dropout():
    net = LUnet(num_classes=3, levels=2, width=4, convs_per_level=1, dropout=0.005)
    kinds = [type(m).__name__ for m in net.encoders[0]]
    assert kinds == ["Conv3d", "ReLU", "BatchNorm3d", "Dropout"]


def test_config_round_trip_rebuilds_same_network():
    net = LUnet(num_classes=3, levels=4, width=16)
    again = build_network(net.config.to_dict())
    assert count_parameters(again) == count_parameters(net) == 117_939


def test_shipped_model_is_under_one_thirtieth_of_nnunet_size():
    from LUnetSegmentationLib.runtime.weights import find_model

    card = find_model()
    nnunet_sized = count_parameters(Unet(num_classes=3, levels=4, width=32))  # 32-64-128-256
    assert card.data["parameters"] * 30 <= nnunet_sized
    assert count_parameters(build_network(card.data["network"])) == card.data["parameters"]


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown architecture"):
        NetworkConfig(architecture="ResNet").level_channels()
