"""Detail restore: G(result) + original - G(original), G = cv2.GaussianBlur(k, sigma 0) (cv2 is the oracle)."""
import cv2
import numpy as np
import pytest
import torch

from lib_iclight import restore_detail, resize_and_center_crop
from lib_iclight.detail import gaussian_blur, gaussian_kernel

RNG = np.random.default_rng(1)


@pytest.mark.parametrize("ksize", [3, 5, 7, 9, 11])
def test_blur_matches_opencv(ksize):
    image = RNG.random((20, 17, 3)).astype(np.float32)
    want = cv2.GaussianBlur(image, (ksize, ksize), 0)
    got = gaussian_blur(torch.from_numpy(image).permute(2, 0, 1)[None], ksize)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(gaussian_kernel(ksize).numpy(), cv2.getGaussianKernel(ksize, 0).ravel(), atol=1e-12)


def test_restore_detail_formula():
    result = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    original = RNG.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    got = restore_detail(result, original, blur_radius=5)
    o = resize_and_center_crop(original, 32, 24).astype(np.float32) / 255
    r = result.astype(np.float32) / 255
    want = np.clip(cv2.GaussianBlur(r, (5, 5), 0) + o - cv2.GaussianBlur(o, (5, 5), 0), 0, 1)
    assert got.shape == result.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - np.round(want * 255).astype(int)).max() <= 1
    flat = np.full_like(result, 90)
    assert np.abs(restore_detail(flat, flat).astype(int) - 90).max() == 0  # nothing to transfer
