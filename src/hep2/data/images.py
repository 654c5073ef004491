"""The one image loader: decode any common format, normalise intensity, resize, cache.

Images become square float32 arrays in [0, 1] (stored as uint8 in the cache): per-image robust
percentile normalisation (SNPHEp-2 cells are dim and vary by specimen), an optional cell mask,
then a resize of the longest side to ``size`` keeping the aspect ratio, zero-padded to a square; or,
with ``scale``, one fixed magnification for every cell (texture keeps its size in pixels), centred
on the square and cropped where the cell is larger.
"""

from __future__ import annotations

import hashlib
import io
import json
import numbers
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import Hep2Error
from ..limits import check_range  # the settings' own ranges
from .cellset import CellSet, file_digest

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".gif", ".webp")
IMAGE_FORMATS = "PNG, TIFF, BMP, JPEG, GIF or WebP"  # what the extensions above are, for messages
CACHE_VERSION = 2  # 2: NaN pixels refused, colour channel setting


@dataclass(frozen=True)
class Preprocess:
    """How a raw cell image becomes a network input."""

    size: int = 64  # side of the square output
    low_pct: float = 1.0  # intensity percentile mapped to 0
    high_pct: float = 99.5  # intensity percentile mapped to 1
    use_mask: bool = True  # multiply by the cell mask where the layout gives one
    keep_aspect: bool = True  # pad to a square (True) or stretch (False)
    scale: float = 0.0  # 0: fit the longest side to size; > 0: resize by this factor, centre, crop
    highpass: float = 0.0  # > 0: the image minus its Gaussian blur of this sigma (pixels) before normalising
    views: tuple = ()  # several input views, stacked (V, size, size): view v high-pass filtered at
    # sigma views[v] (0: unfiltered) in place of ``highpass``
    equalize: bool = False  # histogram equalisation (the grey levels' ranks) in place of the percentiles:
    # any monotonic change of brightness / contrast / gamma leaves the result as it is
    denoise: float = 0.0  # > 0: non-local means on the raw image first (``denoise_image``), h = this x its noise std
    channel: str = "mean"  # a colour image's grey: mean (of R, G, B) | red | green | blue (FITC: green)
    fit_cell: bool = False  # crop to the cell first (`cell_box`): the cell, not the crop, fills the output, so
    # cells cut with wide or tight margins (by different labs) come out at one size

    def __post_init__(self):

        if not isinstance(self.size, numbers.Integral) or self.size < 2:
            raise Hep2Error(f"Preprocess size={self.size!r}: give the output side in pixels, a whole number >= 2")
        for name in ("low_pct", "high_pct", "scale", "highpass", "denoise"):
            check_range(name, getattr(self, name))
        if not isinstance(self.views, tuple):
            raise Hep2Error(
                f"Preprocess views={self.views!r}: give a tuple of high-pass sigmas, e.g. (0.0, 5.0), or ()"
            )
        check_range("views", self.views, "ae_views")
        if self.channel not in CHANNELS:
            raise Hep2Error(f"channel={self.channel!r}: a colour image's grey is one of {', '.join(CHANNELS)}")
        if not self.equalize and self.low_pct >= self.high_pct:
            raise Hep2Error(
                f"low_pct={self.low_pct}, high_pct={self.high_pct}: the percentile mapped to black must be "
                "below the one mapped to white (the defaults are 1 and 99.5)"
            )


CHANNELS = ("mean", "red", "green", "blue")  # Preprocess.channel: its index in an RGB image, mean for none


def read_image(path, channel: str = "mean") -> np.ndarray:
    """Decode one image file to a 2-D float32 array of raw grey levels; a colour image's grey is the mean
    of R, G and B, or with ``channel`` red / green / blue that channel alone (an alpha channel is dropped);
    ``channel="rgb"`` keeps a colour image's three channels (3, H, W) (a grey image stays 2-D)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise Hep2Error(f"image file {path} is empty (0 bytes): replace it, delete it, or pass --skip-bad")
    except OSError as e:
        raise Hep2Error(
            f"cannot open image file {path}: {e.strerror or e}; check the path and its permissions"
        ) from None
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]  # every page and plane of the series counts, as asarray decodes them all
                planes = int(np.prod(tif.series[0].shape)) // (page.imagelength * page.imagewidth)
                _check_pixels(path, (page.imagelength * planes, page.imagewidth))
                arr = np.asarray(tif.asarray())
        else:
            with Image.open(path) as im:
                _check_pixels(path, im.size[::-1])  # before decoding it
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    arr = np.asarray(im)
                else:
                    arr = np.asarray(im.convert("L") if im.mode not in ("L", "RGB", "RGBA") else im)
    except Hep2Error:
        raise
    except Image.DecompressionBombError as e:  # PIL refuses to open it at all
        raise Hep2Error(
            f"image {path} is too large for a cell image ({e}); crop the cells from it, or pass "
            "--skip-bad to go on without it"
        ) from None
    except PermissionError:
        raise Hep2Error(
            f"cannot read image file {path}: permission denied; fix its permissions, or pass "
            "--skip-bad to go on without it"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, KeyError, IndexError, TypeError) as e:
        raise Hep2Error(
            f"cannot decode image {path} ({type(e).__name__}: {e}): the file is corrupt, truncated or not an "
            "image; replace or delete it, or pass --skip-bad to go on without it"
        ) from None
    arr = arr.astype(np.float32, copy=False)
    bad = int(np.size(arr) - np.isfinite(arr).sum())
    if bad:  # a float TIFF's NaN would be read as black, a cell as blank or worse
        raise Hep2Error(
            f"image {path} has {bad} NaN or infinite pixel values: export it with finite grey levels, or "
            "pass --skip-bad to go on without it"
        )
    if arr.ndim == 3:
        if arr.shape[-1] in (3, 4):  # H, W, RGB(A)
            arr = np.moveaxis(arr, -1, 0)
        if arr.shape[0] in (3, 4) and channel == "rgb":
            return arr[:3]
        if arr.shape[0] in (3, 4):  # C, H, W (some TIFFs)
            arr = arr[:3].mean(axis=0) if channel == "mean" else arr[CHANNELS.index(channel) - 1]
        elif arr.shape[0] == 1:
            arr = arr[0]
    if arr.ndim != 2:
        raise Hep2Error(
            f"image {path} has shape {arr.shape}: expected one 2-D grey or RGB cell image; "
            "replace it or pass --skip-bad"
        )
    if min(arr.shape) < 2:
        raise Hep2Error(
            f"image {path} is {arr.shape[1]}x{arr.shape[0]} pixels: too small to hold a cell (cell "
            "images are usually 30 px a side or more); replace it or pass --skip-bad"
        )
    return arr


MAX_PIXELS = 25_000_000  # 5000 x 5000: a cell image is a few hundred pixels a side; more is a whole field or slide


def _check_pixels(path, shape) -> None:
    """Refuse an image of over MAX_PIXELS pixels before it is decoded (a 100 KB PNG can hold 10^8 pixels)."""
    h, w = shape[0], shape[1] if len(shape) > 1 else 1
    if h * w > MAX_PIXELS:
        raise Hep2Error(
            f"image {path} is {w}x{h} pixels, over the {MAX_PIXELS:,} a cell image may have: it looks "
            "like a whole field or slide; crop the cells from it, or pass --skip-bad to go on without it"
        )


def read_cell(path, channel: str = "mean") -> np.ndarray:
    """``read_image``, refusing an image with no cell in it: one grey level all over."""
    arr = read_image(path, channel)
    if arr.max() <= arr.min():
        raise Hep2Error(
            f"image {path} is blank (every pixel is {arr.flat[0]:g}): there is no cell in it to "
            "classify; replace it, delete it, or pass --skip-bad"
        )
    return arr


def normalise(
    arr: np.ndarray,
    low_pct: float = 1.0,
    high_pct: float = 99.5,
    mask: np.ndarray | None = None,
    equalize: bool = False,
) -> np.ndarray:
    """Map the [low, high] percentiles of the (masked) grey levels to [0, 1], clipped; with
    ``equalize``, each grey level to its rank among the (masked) grey levels (histogram
    equalisation, scikit-image), which no monotonic change of intensity alters."""
    masked = mask is not None and mask.any()
    values = arr[mask] if masked else arr
    if equalize:
        from skimage.exposure import equalize_hist

        flat = values.max() <= values.min()  # a blank image stays blank (equalize_hist would make it 1)
        out = (
            np.zeros(arr.shape)
            if flat
            else equalize_hist(arr.astype(np.float64), nbins=256, mask=mask if masked else None)
        )
    else:
        lo, hi = np.percentile(values, [low_pct, high_pct])
        out = (arr - lo) / max(hi - lo, 1e-6)
    out = np.clip(out, 0.0, 1.0)
    if masked:
        out = out * mask
    return out.astype(np.float32)


def resize_square(arr: np.ndarray, size: int, keep_aspect: bool = True, scale: float = 0.0) -> np.ndarray:
    """Resize so the longest side is ``size`` (bilinear), zero-pad to ``size`` x ``size``, centred.

    With ``scale`` > 0 every image is resized by that one factor instead (1: native pixels), then
    centred on the square: zero-padded where smaller, its centre cropped where larger (``keep_aspect``
    does not apply then).
    """
    h, w = arr.shape
    if scale > 0:
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    elif keep_aspect:
        s = size / max(h, w)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
    else:
        nh = nw = size
    img = (
        arr
        if (nh, nw) == (h, w)
        else np.asarray(Image.fromarray(arr.astype(np.float32), mode="F").resize((nw, nh), Image.Resampling.BILINEAR))
    )
    out = np.zeros((size, size), np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    src = img[max(0, -top) : max(0, -top) + size, max(0, -left) : max(0, -left) + size]
    out[max(0, top) : max(0, top) + src.shape[0], max(0, left) : max(0, left) + src.shape[1]] = src
    return np.clip(out, 0.0, 1.0)


def read_mask(mask_path, shape, image_path) -> np.ndarray:
    """A cell's mask (pixels above 0), which must match its image's ``shape`` and mark some pixel."""
    mask = read_image(mask_path) > 0
    if mask.shape != tuple(shape):
        raise Hep2Error(
            f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
            f"{shape[1]}x{shape[0]}: fix or remove the mask, or pass --skip-bad"
        )
    if not mask.any():
        raise Hep2Error(
            f"mask {mask_path} marks no pixel of its image {image_path} (it is all 0): fix or remove "
            "the mask, or pass --skip-bad"
        )
    return mask


def preprocess_image(path, prep: Preprocess = Preprocess(), mask_path=None) -> np.ndarray:
    """One file to one normalised square float32 array in [0, 1]: (size, size), or with ``views``
    (V, size, size), one view a high-pass sigma, the file read once."""
    arr = read_cell(path, prep.channel)
    mask = read_mask(mask_path, arr.shape, path) if prep.use_mask and mask_path is not None else None
    return preprocess_array(arr, prep, mask)


def preprocess_array(arr: np.ndarray, prep: Preprocess = Preprocess(), mask: np.ndarray | None = None) -> np.ndarray:
    """`preprocess_image` of a grey image already in memory (raw grey levels) and its mask (bool, or None)."""
    if prep.fit_cell:
        box = cell_box(arr, mask)
        arr, mask = arr[box], None if mask is None else mask[box]
    arr = denoise_image(arr, prep.denoise, mask)
    return (
        np.stack([_filtered(arr, mask, prep, s) for s in prep.views])
        if prep.views
        else _filtered(arr, mask, prep, prep.highpass)
    )


def png_bytes(arr: np.ndarray) -> bytes:
    """An image array (uint8 grey or RGB, uint16 grey) encoded as PNG."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def cell_box(arr: np.ndarray, mask: np.ndarray | None = None, margin: float = 0.05) -> tuple[slice, slice]:
    """The bounding box of the cell in a crop, with ``margin`` (a share of its size) around it: the mask's where
    one is given, else the largest region above the crop's Otsu threshold (a crop holds one cell, maybe parts of
    its neighbours at the edges). The whole crop where neither finds one."""
    from skimage.filters import threshold_otsu
    from skimage.measure import label, regionprops

    fg = mask if mask is not None and mask.any() else None
    if fg is None and np.ptp(arr) > 0:
        labels = label(arr > threshold_otsu(arr))
        regions = regionprops(labels)
        if regions:
            fg = labels == max(regions, key=lambda r: r.area).label
    if fg is None or not fg.any():
        return slice(None), slice(None)
    rows, cols = np.flatnonzero(fg.any(1)), np.flatnonzero(fg.any(0))
    pad = int(round(margin * max(rows[-1] - rows[0], cols[-1] - cols[0])))
    return (
        slice(max(rows[0] - pad, 0), rows[-1] + pad + 1),
        slice(max(cols[0] - pad, 0), cols[-1] + pad + 1),
    )


def denoise_image(arr: np.ndarray, strength: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Non-local means (scikit-image, 3x3 patches, 9x9 search window) on one raw grey image, of strength
    ``h = strength x`` the image's own noise std (``estimate_sigma``, wavelet-based; measured on the mask's
    bounding box where a mask is given, so a wide background does not set it), so a dim, grainy cell is
    smoothed more than a bright, clean one, and a gain on the grey levels changes nothing but the gain.
    ``strength`` 0, an image under 5 px a side, or one with no measurable noise is returned as it is."""
    if strength <= 0 or min(arr.shape) < 5:
        return arr
    try:
        import pywt  # noqa: F401  (estimate_sigma's wavelets)
        from skimage.restoration import denoise_nl_means, estimate_sigma
    except ImportError as e:
        raise Hep2Error(
            f"denoise={strength} needs PyWavelets ({e}): pip install PyWavelets, or set denoise=0"
        ) from None

    a = arr.astype(np.float64)
    part = a
    if mask is not None and mask.any():
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        box = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        part = box if min(box.shape) >= 5 else a
    sigma = float(estimate_sigma(part))
    if not np.isfinite(sigma) or sigma <= 0:
        return arr
    return denoise_nl_means(a, h=strength * sigma, sigma=sigma, patch_size=3, patch_distance=4, fast_mode=True).astype(
        np.float32
    )


def _filtered(arr, mask, prep: Preprocess, highpass: float) -> np.ndarray:
    if highpass > 0:
        from scipy.ndimage import gaussian_filter

        arr = arr - gaussian_filter(arr, highpass, mode="nearest")
    return resize_square(
        normalise(arr, prep.low_pct, prep.high_pct, mask, prep.equalize), prep.size, prep.keep_aspect, prep.scale
    )


def plain_view(prep: Preprocess) -> int:
    """Which of the stacked views is the unfiltered cell (the first where none is)."""
    return list(prep.views).index(0) if 0 in prep.views else 0


def image_shape(prep: Preprocess) -> tuple:
    """The shape of one preprocessed image: (size, size), or (V, size, size) with views."""
    return ((len(prep.views),) if prep.views else ()) + (prep.size, prep.size)


def as_uint8_images(X) -> np.ndarray:
    """Images (N, S, S) or (N, 1, S, S), uint8 0..255 or float 0..1, as a uint8 array (N, H, W)."""
    try:
        X = np.asarray(X)
    except ValueError:  # a list of arrays of several sizes
        raise Hep2Error(
            "the images have several sizes: preprocess them to one (hep2.data.load_images does), or give image files"
        ) from None
    if X.ndim == 4 and X.shape[1] == 1:
        X = X[:, 0]
    if X.ndim != 3 or min(X.shape[1:], default=0) < 2:
        raise Hep2Error(
            f"expected images of shape (N, S, S) or (N, 1, S, S), got {X.shape}: pass the "
            "array hep2.data.load_images returns"
        )
    if X.dtype == np.uint8:
        return X
    if X.dtype == bool or not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise Hep2Error(f"images have dtype {X.dtype}: expected uint8 0..255 or float 0..1")
    if np.issubdtype(X.dtype, np.integer):
        if X.size and (X.min() < 0 or X.max() > 255):
            raise Hep2Error(f"integer images must lie in 0..255, got {X.min()}..{X.max()}")
        return X.astype(np.uint8)
    if X.size and not np.isfinite(X).all():
        raise Hep2Error("images contain NaN or infinite values")
    if X.size and (X.min() < -1e-6 or X.max() > 1 + 1e-6):
        raise Hep2Error(
            f"float images must lie in 0..1, got {X.min():.3g}..{X.max():.3g}: divide 8-bit "
            "images by 255 or pass them as uint8"
        )
    return np.round(np.clip(X, 0, 1) * 255).astype(np.uint8)


def cache_dir() -> Path:
    """Where decoded arrays and generated data are cached ($HEP2_CACHE, else ~/.cache/hep2)."""
    return Path(os.environ.get("HEP2_CACHE") or Path.home() / ".cache" / "hep2")


def atomic_write_bytes(path, data: bytes) -> None:
    """Write a file under a temporary name, then rename it into place."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result file gets the usual mode
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # named by the file the user asked for, not the temporary one
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def load_images(
    cells: CellSet,
    prep: Preprocess = Preprocess(),
    *,
    skip_bad: bool = False,
    cache: bool = True,
    progress: bool = False,
):
    """Preprocess every image of a set into a uint8 array (N, size, size), or (N, V, size, size) with
    ``prep.views``.

    Returns ``(images, cells)``: with ``skip_bad`` the unreadable images are left out of both and
    listed in ``cells.skipped``; without it the first bad image raises Hep2Error. The array is
    cached on disk keyed by the files' content and the settings, so a second run does not decode.
    """
    if not isinstance(cells, CellSet) or not isinstance(prep, Preprocess):
        raise Hep2Error(
            f"load_images(cells, prep) takes a CellSet (hep2.data.open_dataset gives one) and a Preprocess, "
            f"got {type(cells).__name__} and {type(prep).__name__}"
        )
    if len(cells) == 0:
        raise Hep2Error(f"dataset {cells.name} has no images: check the path and its layout")
    # keys made before views / equalize / denoise / channel existed stay valid
    added = {"views": (), "equalize": False, "denoise": 0.0, "channel": "mean", "fit_cell": False}
    settings = {k: v for k, v in asdict(prep).items() if k not in added or v != added[k]}
    key = hashlib.sha256(json.dumps([CACHE_VERSION, settings]).encode())
    for c in cells.cells:
        # The paths are part of the key because the cached list of bad files names them.
        key.update(f"{c.path}\t{c.mask if prep.use_mask else '-'}\t".encode())
        key.update(_digest_or_none(c.path))
        key.update(_digest_or_none(c.mask) if (c.mask and prep.use_mask) else b"-")
    cache_file = cache_dir() / "images" / f"{key.hexdigest()[:32]}.npz"
    if cache and cache_file.exists():
        try:
            with np.load(cache_file) as z:
                images = z["images"]
                bad = list(zip(map(str, z["bad_paths"]), map(str, z["bad_reasons"])))
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            cache_file.unlink(missing_ok=True)
        else:
            return _finish(images, cells, bad, skip_bad)
    images = np.zeros((len(cells), *image_shape(prep)), np.uint8)
    bad: list[tuple[str, str]] = []  # (path, reason)
    iterator = cells.cells
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="reading images", unit="img", leave=False)
    for i, c in enumerate(iterator):
        try:
            images[i] = np.round(preprocess_image(c.path, prep, c.mask) * 255).astype(np.uint8)
        except Hep2Error as e:
            if not skip_bad:
                raise
            bad.append((str(c.path), str(e)))
    if cache:
        import io

        buf = io.BytesIO()
        np.savez(
            buf,
            images=images,
            bad_paths=np.array([b[0] for b in bad], dtype=str),
            bad_reasons=np.array([b[1] for b in bad], dtype=str),
        )
        try:
            atomic_write_bytes(cache_file, buf.getvalue())
        except OSError as e:  # the cache only saves time: a read-only cache folder is not fatal
            warnings.warn(
                f"cannot write the image cache {cache_file} ({e.strerror or e}); images will be "
                "decoded again next time: set HEP2_CACHE to a writable folder",
                stacklevel=2,
            )
    return _finish(images, cells, bad, skip_bad)


def _digest_or_none(path) -> bytes:
    """A file's digest for the cache key; a missing or unreadable file is reported when decoded."""
    try:
        return file_digest(path).encode()
    except OSError:
        return b"?"


def _finish(images, cells: CellSet, bad: list[tuple[str, str]], skip_bad: bool):
    if bad and not skip_bad:
        raise Hep2Error(bad[0][1])
    if not bad:
        return images, cells
    bad_paths = {b[0] for b in bad}
    keep = np.array([str(c.path) not in bad_paths for c in cells.cells])
    kept = cells.drop(bad_paths)
    kept.skipped = list(cells.skipped) + [reason for _, reason in bad]
    if len(kept) == 0:
        raise Hep2Error(f"no readable image left in {cells.name} after skipping {len(bad)} bad files")
    return images[keep], kept


__all__ = [
    "CACHE_VERSION",
    "CHANNELS",
    "IMAGE_EXTENSIONS",
    "IMAGE_FORMATS",
    "MAX_PIXELS",
    "Preprocess",
    "as_uint8_images",
    "atomic_write_bytes",
    "cache_dir",
    "cell_box",
    "png_bytes",
    "preprocess_array",
    "denoise_image",
    "image_shape",
    "load_images",
    "normalise",
    "plain_view",
    "preprocess_image",
    "read_cell",
    "read_image",
    "read_mask",
    "resize_square",
]
