"""Labels go back onto the input grid at the right place: exact paste on a shared lattice,
interpolation otherwise."""
import numpy as np
import SimpleITK as sitk

from LUnetSegmentationLib.runtime.preprocess import PreprocessingConfig
from LUnetSegmentationLib.runtime.resample import probabilities_to_input_grid, to_model_grid

CONFIG = PreprocessingConfig()


def grid(size, origin, spacing=(1.0, 1.0, 1.0)):
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetDirection(CONFIG.direction)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def one_hot_cube(shape, where):
    probabilities = np.zeros((2, *shape), np.float32)
    probabilities[0] = 1
    probabilities[0][where] = 0
    probabilities[1][where] = 1
    return probabilities


def test_sub_box_on_the_same_lattice_is_pasted_at_its_offset():
    target = grid((20, 18, 16), (0.0, 0.0, 0.0))
    box = to_model_grid(target, CONFIG, ([3, 4, 5], [13, 14, 15]))  # x, y, z start/stop
    probabilities = one_hot_cube((10, 10, 10), (slice(2, 4), slice(1, 3), slice(0, 2)))
    labels = probabilities_to_input_grid(probabilities, box, target)
    expected = np.zeros((16, 18, 20), np.uint8)
    expected[5 + 2 : 5 + 4, 4 + 1 : 4 + 3, 3 + 0 : 3 + 2] = 1
    assert np.array_equal(labels, expected)


def test_half_voxel_shift_is_interpolated_not_rounded_into_place():
    # Same spacing and direction, but the target's lattice sits half a 2 mm voxel away: a paste
    # would shift labels by a voxel; interpolation keeps the cube where it is in space.
    target = grid((20, 20, 20), (1.0, 1.0, 1.0), spacing=(2.0, 2.0, 2.0))
    model_grid = grid((20, 20, 20), (0.0, 0.0, 0.0), spacing=(2.0, 2.0, 2.0))
    probabilities = one_hot_cube((20, 20, 20), (slice(8, 12), slice(8, 12), slice(8, 12)))
    labels = probabilities_to_input_grid(probabilities, model_grid, target)
    centre_ras = lambda image, mask: np.mean(
        [image.TransformIndexToPhysicalPoint([int(i) for i in idx[::-1]]) for idx in np.argwhere(mask)], axis=0
    )
    truth = np.zeros((20, 20, 20), bool)
    truth[8:12, 8:12, 8:12] = True
    assert labels.sum() > 0
    assert np.allclose(centre_ras(target, labels == 1), centre_ras(model_grid, truth), atol=0.25)  # a paste would be 1 mm off
