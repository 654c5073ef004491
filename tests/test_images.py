"""Image decoding (every format to 2-D grey), normalisation, resize with padding, masks, disk cache."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import hep2.data.images as images_mod
from hep2.data import Cell, CellSet, Preprocess, load_images, preprocess_image, read_image
from hep2.data.images import cache_dir, normalise, resize_square
from hep2.errors import Hep2Error

# ------------------------------------------------------------------------------ decoding


def test_png_8bit(tmp_path, images):
    arr = images.array(20, 30, seed=1)
    out = read_image(images.png(tmp_path / "a.png", arr))
    assert out.dtype == np.float32 and out.shape == (20, 30)
    np.testing.assert_array_equal(out, arr.astype(np.float32))


def test_png_16bit(tmp_path):
    arr = np.arange(20 * 24, dtype=np.uint16).reshape(20, 24) * 100
    path = tmp_path / "a16.png"
    Image.fromarray(arr).save(path)
    out = read_image(path)
    assert out.shape == (20, 24)
    assert out.max() == arr.max() > 255  # 16-bit levels are kept, not clipped to 8 bits
    np.testing.assert_array_equal(out, arr.astype(np.float32))


def test_tiff_16bit(tmp_path, images):
    arr = images.array(18, 26, seed=2, high=65535, dtype=np.uint16)
    out = read_image(images.tiff16(tmp_path / "a.tif", arr))
    assert out.shape == (18, 26) and out.dtype == np.float32
    assert out.max() > 40000
    np.testing.assert_array_equal(out, arr.astype(np.float32))


def test_tiff_rgb_channels_first(tmp_path):
    import tifffile

    arr = np.stack([np.full((10, 12), v, np.uint16) for v in (300, 600, 900)])  # C, H, W
    tifffile.imwrite(tmp_path / "c.tiff", arr, photometric="minisblack", planarconfig="separate")
    out = read_image(tmp_path / "c.tiff")
    assert out.shape == (10, 12)
    np.testing.assert_allclose(out, 600.0)


def test_bmp(tmp_path, images):
    arr = images.array(16, 16, seed=3)
    out = read_image(images.bmp(tmp_path / "a.bmp", arr))
    np.testing.assert_array_equal(out, arr.astype(np.float32))


def test_rgb_jpeg_to_grey(tmp_path, images):
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 210, 120, 30  # grey = mean = 120
    out = read_image(images.jpeg(tmp_path / "a.jpg", rgb))
    assert out.shape == (24, 32) and out.ndim == 2
    assert abs(float(out.mean()) - 120.0) < 4


def test_a_colour_cell_read_from_one_channel(tmp_path, fresh_cache):
    """FITC cells exported as RGB with a red counterstain: the mean of the channels mixes the two; setting
    channel=green reads the stain alone, in training (load_images, its cache key), prediction and the summary."""
    from hep2.data import open_dataset
    from hep2.data.summary import summarize
    from hep2.presets import Preset

    rng = np.random.default_rng(0)
    for i in range(3):
        stain = (rng.random((30, 30)) * 200).astype(np.uint8)
        counter = np.full((30, 30), 90, np.uint8)
        counter[10:20] = 200
        Image.fromarray(np.stack([counter, stain, np.zeros_like(stain)], -1)).save(tmp_path / f"c{i}.png")
        np.testing.assert_array_equal(read_image(tmp_path / f"c{i}.png", "green"), stain)
        np.testing.assert_allclose(
            read_image(tmp_path / f"c{i}.png"), (stain + counter.astype(np.float32)) / 3, atol=1e-4
        )
    green = Preset().override({"channel": "green", "size": 30}).preprocess()
    assert green.channel == "green"
    a = preprocess_image(tmp_path / "c0.png", green)
    np.testing.assert_allclose(a, preprocess_image(tmp_path / "c0.png", Preprocess(size=30, channel="green")))
    assert np.abs(a - preprocess_image(tmp_path / "c0.png", Preprocess(size=30))).max() > 0.1
    cells = CellSet("t", [Cell(f"c{i}", tmp_path / f"c{i}.png", "homogeneous") for i in range(3)])
    mean_imgs, _ = load_images(cells, Preprocess(size=30))
    green_imgs, _ = load_images(cells, Preprocess(size=30, channel="green"))  # its own cache entry
    np.testing.assert_array_equal(green_imgs[0], np.round(a * 255).astype(np.uint8))
    assert not np.array_equal(mean_imgs, green_imgs)
    with pytest.raises(Hep2Error, match="channel='fitc': a colour image's grey is one of mean, red, green, blue"):
        Preprocess(channel="fitc")
    with pytest.raises(Hep2Error, match="channel"):
        Preset().override({"channel": "fitc"})
    (tmp_path / "homogeneous").mkdir()
    for i in range(3):
        (tmp_path / f"c{i}.png").rename(tmp_path / "homogeneous" / f"c{i}.png")
    problems = " ".join(summarize(open_dataset(f"folder:{tmp_path}"))["problems"])
    assert "3 colour images: their signal is red 0." in problems and "--set channel=green" in problems
    for i in range(3):  # grey cells saved as RGB (R = G = B) are not colour images
        grey = np.asarray(Image.open(tmp_path / "homogeneous" / f"c{i}.png"))[..., 1]
        Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "homogeneous" / f"c{i}.png")
    assert "colour" not in " ".join(summarize(open_dataset(f"folder:{tmp_path}"))["problems"])


def test_rgba_and_palette_png_to_grey(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 90, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png").shape == (10, 10)
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png"), 90.0)
    Image.fromarray(np.full((8, 9), 50, np.uint8)).convert("P").save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.shape == (8, 9)
    np.testing.assert_allclose(out, 50.0)


# ------------------------------------------------------------------------------ normalisation


def test_an_image_too_large_for_a_cell_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    import tifffile

    monkeypatch.setattr(images_mod, "MAX_PIXELS", 200 * 300 - 1)
    Image.fromarray(np.full((200, 300), 9, np.uint8)).save(tmp_path / "field.png")
    tifffile.imwrite(tmp_path / "field.tif", np.full((200, 300), 9, np.uint16))
    for f in ("field.png", "field.tif"):
        with pytest.raises(
            Hep2Error,
            match=f"image {tmp_path / f} is 300x200 pixels, over the 59,999 .* crop the "
            "cells from it, or pass --skip-bad",
        ):
            read_image(tmp_path / f)
    monkeypatch.setattr(images_mod, "MAX_PIXELS", 200 * 300)
    assert read_image(tmp_path / "field.png").shape == (200, 300)
    tifffile.imwrite(
        tmp_path / "planes.tif", np.full((3, 200, 300), 9, np.uint8), photometric="rgb", planarconfig="separate"
    )  # every plane counts (it was read as 3 x 200 rows)
    with pytest.raises(Hep2Error, match="planes.tif is 300x600 pixels"):
        read_image(tmp_path / "planes.tif")
    # PIL's own refusal (a decompression bomb) is a named error too
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Hep2Error, match="field.png is too large for a cell image .*pass --skip-bad"):
        read_image(tmp_path / "field.png")


def test_nan_or_infinite_pixels_are_a_named_error(tmp_path):
    import tifffile

    for bad in (np.nan, np.inf):
        arr = np.full((20, 20), 0.5, np.float32)
        arr[3, 4] = bad
        tifffile.imwrite(tmp_path / "f.tif", arr)
        with pytest.raises(Hep2Error, match=r"f.tif has 1 NaN or infinite pixel values: .*--skip-bad"):
            read_image(tmp_path / "f.tif")


def test_normalise_maps_percentiles_to_unit_range():
    arr = np.arange(1000, dtype=np.float32).reshape(25, 40) + 7  # 7 .. 1006
    out = normalise(arr, 1.0, 99.0)
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    lo, hi = np.percentile(arr, [1.0, 99.0])
    np.testing.assert_allclose(out[10, 10], (arr[10, 10] - lo) / (hi - lo), rtol=1e-5)
    assert (out == 0).sum() == 10 and (out == 1).sum() == 10  # clipped tails, about 1% each


def test_normalise_dim_image_is_stretched_and_constant_image_is_zero():
    dim = np.random.default_rng(0).uniform(10, 40, (30, 30)).astype(np.float32)  # dim raw levels
    out = normalise(dim)
    assert out.max() == pytest.approx(1.0) and out.min() == pytest.approx(0.0)
    flat = normalise(np.full((10, 10), 77, np.float32))
    assert np.all(flat == 0) and not np.isnan(flat).any()


def test_normalise_with_mask_zeroes_outside_and_uses_inside_levels():
    arr = np.zeros((10, 10), np.float32)
    arr[:, 5:] = np.linspace(100, 200, 50).reshape(10, 5)
    arr[:, :5] = 5000  # a bright artefact outside the cell
    mask = np.zeros((10, 10), bool)
    mask[:, 5:] = True
    out = normalise(arr, 0.0, 100.0, mask)
    assert np.all(out[:, :5] == 0)
    assert out[:, 5:].max() == pytest.approx(1.0) and out[:, 5:].min() == pytest.approx(0.0)


def test_equalize_is_blind_to_brightness_contrast_and_gamma_and_keeps_masks_and_blanks():
    rng = np.random.default_rng(0)
    dim = rng.integers(5, 60, (30, 40)).astype(np.float32)  # an intermediate-intensity cell
    bright = 3.0 * (dim / 60) ** 0.6 * 250 + 20  # the same cell brighter, other gamma
    a, b = normalise(dim, equalize=True), normalise(bright, equalize=True)
    assert a.dtype == np.float32 and a.max() == pytest.approx(1.0)
    np.testing.assert_allclose(a, b, atol=0.01)  # percentiles alone would differ
    assert np.abs(normalise(dim) - normalise(bright)).max() > 0.1
    ranks = np.argsort(np.argsort(dim.ravel(), kind="stable"))
    assert np.corrcoef(a.ravel(), ranks)[0, 1] > 0.99  # a grey level's rank, spread over [0, 1]
    mask = np.zeros_like(dim, bool)
    mask[5:25, 5:30] = True
    assert np.all(normalise(dim, mask=mask, equalize=True)[~mask] == 0)
    assert np.all(normalise(np.full((8, 8), 9.0), equalize=True) == 0)


def test_equalize_setting_reaches_the_loader_and_its_cache_key(tmp_path, images, fresh_cache):
    from hep2.pipeline.methods import get_method
    from hep2.presets import get_preset

    cfg = get_preset("tiny", overrides={"equalize": "true"})
    assert cfg.preprocess().equalize
    assert not get_method("cnn5", cfg).preprocess().equalize  # the published baselines keep their input
    cs = make_set(tmp_path / "imgs", images)
    plain, _ = load_images(cs, Preprocess(size=16))
    equalised, _ = load_images(cs, Preprocess(size=16, equalize=True))
    assert len(list((fresh_cache / "images").glob("*.npz"))) == 2 and not np.array_equal(plain, equalised)


# ------------------------------------------------------------------------------ resize


def test_resize_keeps_aspect_and_pads_with_zeros():
    arr = np.ones((20, 40), np.float32)  # wide: 40 -> 32, 20 -> 16, padded 8 rows above and below
    out = resize_square(arr, 32)
    assert out.shape == (32, 32) and out.dtype == np.float32
    assert np.all(out[:8] == 0) and np.all(out[24:] == 0)
    np.testing.assert_allclose(out[8:24], 1.0, atol=1e-5)
    tall = resize_square(np.ones((50, 25), np.float32), 20)  # 50 -> 20, 25 -> 10: 5 columns each side
    assert np.all(tall[:, :5] == 0) and np.all(tall[:, 15:] == 0)
    np.testing.assert_allclose(tall[:, 5:15], 1.0, atol=1e-5)


def test_resize_stretch_and_upscale():
    out = resize_square(np.ones((20, 40), np.float32), 32, keep_aspect=False)
    np.testing.assert_allclose(out, 1.0, atol=1e-5)
    up = resize_square(np.ones((8, 8), np.float32), 64)
    assert up.shape == (64, 64)
    np.testing.assert_allclose(up, 1.0, atol=1e-5)


def test_resize_fixed_scale_keeps_pixel_size_pads_and_crops():
    arr = np.arange(100, dtype=np.float32).reshape(10, 10) / 100
    small = resize_square(arr, 14, scale=1.0)  # native pixels, 2 zero rows / columns around
    np.testing.assert_array_equal(small[2:12, 2:12], arr)
    assert small[:2].sum() == 0 and small[12:].sum() == 0 and small[:, :2].sum() == 0
    np.testing.assert_array_equal(resize_square(arr, 6, scale=1.0), arr[2:8, 2:8])  # the centre of a larger cell
    half = resize_square(np.ones((8, 4), np.float32), 8, scale=0.5)  # 8x4 -> 4x2, centred
    assert half.sum() == pytest.approx(8.0) and np.all(half[2:6, 3:5] == 1.0)
    # two cells of different size keep one texture scale, where fitting would magnify the small one twice
    assert resize_square(np.ones((20, 20), np.float32), 64, scale=1.0).sum() == 400
    assert resize_square(np.ones((20, 20), np.float32), 64).sum() == 64 * 64


def test_scale_setting_reaches_the_loader_and_is_checked():
    from hep2.pipeline.methods import get_method
    from hep2.presets import get_preset

    cfg = get_preset("tiny", overrides={"scale": "1"})
    assert cfg.preprocess().scale == 1.0 and get_method("resnet", cfg).preprocess().scale == 1.0
    for name in ("cnn5", "lbp-svm", "texture-svm"):  # the baselines keep their published inputs
        assert (
            get_method(name, cfg.override({"highpass": 3})).preprocess()
            == get_method(name, get_preset("tiny")).preprocess()
        )
    for bad in ("nan", "inf", "17"):  # refused for every method, before anything runs
        with pytest.raises(Hep2Error, match=f"scale={bad}"):
            get_preset("tiny", overrides={"scale": bad})
    with pytest.raises(Hep2Error, match="scale=-1.0"):
        get_preset("tiny", overrides={"scale": "-1"}).preprocess()


def test_highpass_keeps_the_texture_and_drops_the_slow_shading(tmp_path):
    from hep2.presets import get_preset

    yy, xx = np.mgrid[:40, :40]
    ramp = 50.0 + 4.0 * xx  # slow shading across the cell
    dots = ((yy % 8 == 4) & (xx % 8 == 4)) * 60.0  # fine speckles
    path = tmp_path / "cell.tif"
    import tifffile

    tifffile.imwrite(path, (ramp + dots).astype(np.uint16))
    plain = preprocess_image(path, Preprocess(size=40))
    sharp = preprocess_image(path, Preprocess(size=40, highpass=2.0))
    background = ~((yy % 8 >= 3) & (yy % 8 <= 5) & (xx % 8 >= 3) & (xx % 8 <= 5))
    inner = background & (xx > 4) & (xx < 35)
    # the shading spans most of the range without the filter, almost nothing with it
    assert np.ptp(plain[inner]) > 0.5 and np.ptp(sharp[inner]) < 0.1
    assert sharp[dots > 0].mean() > sharp[inner].mean() + 0.5  # the speckles stand out
    with pytest.raises(Hep2Error, match="highpass=-2.0"):
        get_preset("tiny", overrides={"highpass": "-2"}).preprocess()


def test_denoise_smooths_grain_in_proportion_to_the_noise_and_is_blind_to_gain():
    from hep2.data.images import denoise_image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    clean = 20.0 + 30.0 * (((yy // 8) + (xx // 8)) % 2)  # a blocky pattern, edges to keep
    dim = clean + rng.normal(0, 6.0, clean.shape)  # grainy, as a dim cell
    out = denoise_image(dim, 1.6)
    assert out.dtype == np.float32 and out.shape == dim.shape
    assert np.abs(out - clean).mean() < 0.8 * np.abs(dim - clean).mean()  # closer to the clean cell
    assert abs(out[clean > 30].mean() - out[clean < 30].mean()) > 20  # the pattern's contrast is kept
    np.testing.assert_allclose(denoise_image(dim * 7.0, 1.6), out * 7.0, rtol=1e-4, atol=1e-3)
    assert denoise_image(dim, 0) is dim  # 0: off
    np.testing.assert_array_equal(denoise_image(np.full((9, 9), 5.0), 2.0), np.full((9, 9), 5.0))  # no noise
    mild = denoise_image(dim, 0.5)  # weaker: less smoothing
    assert np.abs(mild - dim).mean() < np.abs(out - dim).mean()


def test_denoise_measures_the_noise_inside_the_mask_and_explains_a_missing_pywavelets(monkeypatch):
    import sys

    from hep2.data.images import denoise_image

    rng = np.random.default_rng(1)
    img = rng.normal(100, 0.5, (60, 60))  # a wide, clean background
    img[20:40, 20:40] += rng.normal(0, 12.0, (20, 20))  # a small, grainy cell
    mask = np.zeros(img.shape, bool)
    mask[20:40, 20:40] = True
    cell = (slice(20, 40), slice(20, 40))
    # the whole image's noise is set by its background; the mask's box gives the cell's own, which smooths it more
    assert denoise_image(img, 1.6, mask)[cell].std() < 0.8 * denoise_image(img, 1.6)[cell].std()
    tiny = rng.normal(0, 1, (4, 9))
    assert denoise_image(tiny, 1.6) is tiny  # too small to measure noise: as it is
    monkeypatch.setitem(sys.modules, "pywt", None)  # PyWavelets not installed
    with pytest.raises(Hep2Error, match="needs PyWavelets.*pip install PyWavelets"):
        denoise_image(img, 1.6)


def test_models_saved_before_denoise_existed_still_preprocess_as_they_did():
    from dataclasses import replace

    from hep2.pipeline.methods import get_method
    from hep2.presets import get_preset

    old = replace(get_preset("improved"))  # a copy: the preset itself stays as it is
    object.__delattr__(old, "denoise")  # an unpickled Preset from before the setting
    for name in ("dcae-mlp", "bow", "shape-index", "lbp-svm"):
        assert get_method(name, old).preprocess().denoise == 0.0


def test_denoise_setting_reaches_the_loader_its_cache_key_and_the_methods(tmp_path, images, fresh_cache):
    from hep2.pipeline.methods import get_method
    from hep2.presets import get_preset

    cfg = get_preset("tiny", overrides={"denoise": "1.6"})
    for name in ("dcae-mlp", "resnet", "bow", "shape-index"):
        assert get_method(name, cfg).preprocess().denoise == 1.6
    for name in ("cnn5", "lbp-svm", "texture-svm"):  # the published baselines keep their input
        assert get_method(name, cfg).preprocess() == get_method(name, get_preset("tiny")).preprocess()
    assert get_method("bow", cfg).preprocess().size == get_method("lbp-svm", cfg).preprocess().size
    cs = make_set(tmp_path / "imgs", images)
    plain, _ = load_images(cs, Preprocess(size=16))
    smooth, _ = load_images(cs, Preprocess(size=16, denoise=1.6))
    assert len(list((fresh_cache / "images").glob("*.npz"))) == 2 and not np.array_equal(plain, smooth)
    np.testing.assert_array_equal(
        smooth[0], np.round(preprocess_image(cs.cells[0].path, Preprocess(size=16, denoise=1.6)) * 255)
    )
    for bad in ("-1", "11", "nan"):
        with pytest.raises(Hep2Error, match=f"denoise={bad}"):
            get_preset("tiny", overrides={"denoise": bad})


def test_views_stack_the_plain_and_the_filtered_cell_and_are_checked(tmp_path):
    from hep2.pipeline.methods import get_method
    from hep2.presets import get_preset

    rng = np.random.default_rng(0)
    path = tmp_path / "cell.png"
    Image.fromarray(rng.integers(0, 255, (30, 40)).astype(np.uint8)).save(path)
    both = preprocess_image(path, Preprocess(size=24, views=(0.0, 2.0)))
    assert both.shape == (2, 24, 24)
    np.testing.assert_array_equal(both[0], preprocess_image(path, Preprocess(size=24)))
    np.testing.assert_array_equal(both[1], preprocess_image(path, Preprocess(size=24, highpass=2.0)))
    cs = CellSet("one", [Cell("0", path, "nucleolar")])
    arr, _ = load_images(cs, Preprocess(size=24, views=(0.0, 2.0)))
    assert arr.shape == (1, 2, 24, 24) and load_images(cs, Preprocess(size=24))[0].shape == (1, 24, 24)
    # the setting: the autoencoders' input only (resnet reads the plain cell), checked before anything runs
    cfg = get_preset("tiny", overrides={"ae_views": "0,5", "ae_ensemble": "3"})
    assert cfg.ae_views == (0.0, 5.0) and get_method("dcae-mlp", cfg).preprocess().views == (0.0, 5.0)
    assert get_method("resnet", cfg).preprocess().views == ()
    for bad, msg in (
        (dict(ae_views="0,-1", ae_ensemble="2"), "ae_views=0.0,-1.0: each value must lie in"),
        (dict(ae_views="0,5", ae_ensemble="1"), "set ae_ensemble to at least 2"),
        (dict(ae_views="0,5", ae_ensemble="2", highpass="3"), "put 3.0 among ae_views"),
        (dict(ae_views="a,b"), "ae_views='a,b': expected a value like 0,5"),
        (dict(ae_views=True), "expected a value like 0,5"),
        (dict(hidden=True), "hidden=True: expected a value like 250,50"),
        (dict(widths=64), "widths=64: expected a value like 16,32,64,128"),
    ):
        with pytest.raises(Hep2Error, match=msg):
            get_preset("tiny", overrides=bad)
    # a JSON list, one number, brackets, and a Python list all name the same views
    assert get_preset("tiny", overrides={"ae_views": [0, 5], "ae_ensemble": 2}).ae_views == (0.0, 5.0)
    assert get_preset("tiny", overrides={"ae_views": "[0,5]", "ae_ensemble": 2}).ae_views == (0.0, 5.0)
    assert get_preset("tiny", overrides={"ae_views": 5}).ae_views == (5.0,)
    assert get_preset("tiny").override({"ae_views": ""}).ae_views == ()
    from hep2.presets import Preset as Settings

    assert Settings(ae_views=[0, 5], ae_ensemble=2).ae_views == (0.0, 5.0)
    # a config file and --set are checked together: the pair below is valid only as a whole
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text('{"ae_ensemble": 1}')
    assert get_preset("improved", config=cfg_file, overrides={"ae_views": ""}).ae_ensemble == 1
    # one DCAEFeatures reads one view: the method trains one per view
    from hep2.estimators import DCAEFeatures

    with pytest.raises(Hep2Error, match="one DCAEFeatures reads one view"):
        DCAEFeatures(preset=get_preset("tiny", overrides={"ae_views": "0,5", "ae_ensemble": 2})).fit(
            np.zeros((4, 32, 32), np.uint8)
        )


def test_preprocess_image_shape_range_and_padding(tmp_path, images):
    path = images.tiff16(tmp_path / "dim.tif", images.array(30, 60, seed=4, high=3000, dtype=np.uint16))
    out = preprocess_image(path, Preprocess(size=40))
    assert out.shape == (40, 40) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert out.max() > 0.95  # a dim 16-bit image is stretched to the full range
    assert np.all(out[:10] == 0) and np.all(out[30:] == 0)  # 30x60 -> 20x40, padded 10 rows each side


def test_preprocess_applies_mask(tmp_path, images):
    img = images.png(tmp_path / "c.png", np.full((20, 20), 150, np.uint8) + np.arange(20, dtype=np.uint8))
    m = np.zeros((20, 20), np.uint8)
    m[:, 10:] = 255
    mask = images.png(tmp_path / "c_Mask.png", m)
    with_mask = preprocess_image(img, Preprocess(size=20), mask)
    assert np.all(with_mask[:, :10] == 0) and with_mask[:, 11:].max() > 0.5
    without = preprocess_image(img, Preprocess(size=20, use_mask=False), mask)
    assert without[:, :9].max() > 0  # the mask is ignored when use_mask is off


def test_mask_of_another_size_is_an_error(tmp_path, images):
    img = images.png(tmp_path / "c.png", images.array(20, 20))
    mask = images.png(tmp_path / "c_Mask.png", np.full((10, 12), 255, np.uint8))
    with pytest.raises(Hep2Error, match=r"c_Mask\.png is 12x10 but its image .*c\.png is 20x20"):
        preprocess_image(img, Preprocess(size=16), mask)


# ------------------------------------------------------------------------------ load_images and cache


def make_set(root, images, n=4, masks=False) -> CellSet:
    cells = []
    for i in range(n):
        p = images.png(root / f"{i}.png", images.array(20 + i, 24, seed=i))
        m = images.png(root / f"{i}_Mask.png", np.full((20 + i, 24), 255, np.uint8)) if masks else None
        cells.append(Cell(str(i), p, "nucleolar" if i % 2 else "golgi", mask=m))
    return CellSet("tiny", cells)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("HEP2_CACHE", str(d))
    assert cache_dir() == d
    return d


def _raise(*a, **k):
    raise AssertionError("preprocess_image called: the cache was not used")


def test_load_images_values(tmp_path, images, fresh_cache):
    cs = make_set(tmp_path / "imgs", images)
    arr, kept = load_images(cs, Preprocess(size=16))
    assert arr.shape == (4, 16, 16) and arr.dtype == np.uint8
    assert kept is cs
    want = np.round(preprocess_image(cs.cells[2].path, Preprocess(size=16)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(arr[2], want)
    assert arr.max() > 200  # normalised to the full range before the uint8 cast


def test_cache_second_call_does_not_decode(tmp_path, images, fresh_cache, monkeypatch):
    cs = make_set(tmp_path / "imgs", images, masks=True)
    first, _ = load_images(cs, Preprocess(size=16))
    entries = list((fresh_cache / "images").glob("*.npz"))
    assert len(entries) == 1
    assert not list((fresh_cache / "images").glob(".*tmp"))  # written atomically, nothing left behind
    monkeypatch.setattr(images_mod, "preprocess_image", _raise)
    second, _ = load_images(cs, Preprocess(size=16))
    np.testing.assert_array_equal(first, second)
    with pytest.raises(AssertionError, match="cache was not used"):
        load_images(cs, Preprocess(size=16), cache=False)  # cache=False always decodes


def test_cache_key_changes_with_settings(tmp_path, images, fresh_cache, monkeypatch):
    cs = make_set(tmp_path / "imgs", images)
    load_images(cs, Preprocess(size=16))
    load_images(cs, Preprocess(size=24))
    load_images(cs, Preprocess(size=16, high_pct=90.0))
    assert len(list((fresh_cache / "images").glob("*.npz"))) == 3
    monkeypatch.setattr(images_mod, "preprocess_image", _raise)
    with pytest.raises(AssertionError):
        load_images(cs, Preprocess(size=16, keep_aspect=False))


def test_cache_key_changes_with_file_content(tmp_path, images, fresh_cache, monkeypatch):
    cs = make_set(tmp_path / "imgs", images)
    before, _ = load_images(cs, Preprocess(size=16))
    images.png(cs.cells[1].path, np.zeros((30, 10), np.uint8) + np.arange(10, dtype=np.uint8) * 20)
    after, _ = load_images(cs, Preprocess(size=16))
    assert len(list((fresh_cache / "images").glob("*.npz"))) == 2
    np.testing.assert_array_equal(before[[0, 2, 3]], after[[0, 2, 3]])
    assert not np.array_equal(before[1], after[1])
    assert np.all(after[1][:, :5] == 0)  # the new 30x10 image is padded left and right


def test_damaged_cache_entry_is_rebuilt(tmp_path, images, fresh_cache):
    cs = make_set(tmp_path / "imgs", images)
    first, _ = load_images(cs, Preprocess(size=16))
    (entry,) = (fresh_cache / "images").glob("*.npz")
    entry.write_bytes(b"not an npz file")
    again, _ = load_images(cs, Preprocess(size=16))
    np.testing.assert_array_equal(first, again)
    assert entry.stat().st_size > 100


def test_load_images_empty_set_is_an_error():
    with pytest.raises(Hep2Error, match="empty.*no images"):
        load_images(CellSet("empty", []))


def test_unwritable_cache_is_a_warning_not_a_crash(tmp_path, images, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("HEP2_CACHE", str(blocker / "cache"))
    cs = make_set(tmp_path / "imgs", images, n=2)
    with pytest.warns(UserWarning, match="cannot write the image cache .*HEP2_CACHE"):
        arr, kept = load_images(cs, Preprocess(size=8))
    assert arr.shape == (2, 8, 8) and arr.max() > 0


def test_a_failed_write_names_the_file_asked_for_and_leaves_no_temporary(tmp_path):
    from hep2.data.images import atomic_write_bytes

    target = tmp_path / "predictions.csv"
    target.mkdir()  # e.g. --out naming a folder
    with pytest.raises(OSError) as e:
        atomic_write_bytes(target, b"x")
    assert e.value.filename == str(target)
    assert list(tmp_path.iterdir()) == [target] and not list(target.iterdir())
