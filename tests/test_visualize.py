"""Tests of tf_clrp.visualize: reduction, normalisation, colormaps, grids, atomic PNGs."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from tf_clrp import visualize as vis


@pytest.fixture()
def signed_map() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 10, 3)).astype(np.float32)


# ----------------------------------------------------------------------------- reduction
def test_reduce_channels_all_modes(signed_map: np.ndarray) -> None:
    r = signed_map
    np.testing.assert_allclose(vis.reduce_channels(r, "sum"), r.sum(-1), rtol=1e-6)
    np.testing.assert_allclose(vis.reduce_channels(r, "abs_sum"), np.abs(r).sum(-1), rtol=1e-6)
    np.testing.assert_allclose(vis.reduce_channels(r, "abs-sum"), np.abs(r).sum(-1), rtol=1e-6)
    np.testing.assert_allclose(vis.reduce_channels(r, "max_norm"), np.abs(r).max(-1))
    np.testing.assert_allclose(vis.reduce_channels(r, "l2"), np.linalg.norm(r, axis=-1), rtol=1e-5)
    batch = np.stack([r, -r])
    assert vis.reduce_channels(batch).shape == (2, 12, 10)


def test_reduce_channels_errors() -> None:
    with pytest.raises(ValueError, match="unknown channel reduction 'mean'"):
        vis.reduce_channels(np.zeros((2, 2, 3)), "mean")
    with pytest.raises(ValueError, match="NaN/Inf"):
        vis.reduce_channels(np.full((2, 2, 3), np.nan))
    with pytest.raises(TypeError, match="numeric"):
        vis.reduce_channels(np.array([["a"]]))


# ----------------------------------------------------------------------------- normalize
def test_normalize_symmetric_keeps_zero_and_sign() -> None:
    r = np.array([[-2.0, 0.0, 1.0, 4.0]])
    out = vis.normalize(r, percentile=None)
    np.testing.assert_allclose(out, [[-0.5, 0.0, 0.25, 1.0]])
    out = vis.normalize(r, signed=False, percentile=None)
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.25, 1.0]])


def test_normalize_percentile_clips_outliers() -> None:
    r = np.ones((100, 100), np.float32)
    r[0, 0] = 1000.0
    out = vis.normalize(r, percentile=99.5)
    assert out.max() == 1.0 and out[5, 5] == 1.0  # outlier clipped, bulk at full colour
    assert vis.normalize(r, percentile=None)[5, 5] == pytest.approx(0.001)


def test_normalize_sparse_and_zero_maps() -> None:
    sparse = np.zeros((50, 50), np.float32)
    sparse[3, 4] = 2.0
    out = vis.normalize(sparse, percentile=99.5)  # percentile is 0 -> falls back to max
    assert out[3, 4] == 1.0
    zero = vis.normalize(np.zeros((4, 4)))
    assert np.all(zero == 0) and zero.dtype == np.float32
    with pytest.raises(ValueError, match="percentile"):
        vis.normalize(sparse, percentile=0)


# ----------------------------------------------------------------------------- colours
@pytest.mark.parametrize("backend", ["matplotlib", "opencv"])
@pytest.mark.parametrize("cmap", [None, "bwr", "coldnhot", "hot", "inferno"])
def test_heatmap_shape_and_dtype(signed_map: np.ndarray, backend: str, cmap: str | None) -> None:
    out = vis.heatmap(signed_map, backend=backend, cmap=cmap)
    assert out.shape == (12, 10, 3) and out.dtype == np.uint8


def test_diverging_centre_and_extremes() -> None:
    r = np.array([[-1.0, 0.0, 1.0]], np.float32)
    for backend in ("matplotlib", "opencv"):
        out = vis.heatmap(r, percentile=None, backend=backend)  # bwr
        assert tuple(out[0, 0]) == (0, 0, 255)  # most negative: blue
        assert tuple(out[0, 2]) == (255, 0, 0)  # most positive: red
        assert min(out[0, 1]) >= 250  # zero: white
        hot = vis.heatmap(r, percentile=None, cmap="coldnhot", backend=backend)
        assert max(hot[0, 1]) <= 4  # coldnhot: zero is (nearly) black
        assert tuple(hot[0, 2]) == (255, 255, 0) and tuple(hot[0, 0]) == (0, 255, 255)


def test_auto_sequential_for_nonnegative_maps() -> None:
    r = np.array([[0.0, 0.5, 1.0]], np.float32)
    out = vis.heatmap(r, percentile=None)  # 'hot': dark -> bright
    brightness = out.astype(int).sum(-1)[0]
    assert brightness[0] < brightness[1] < brightness[2]
    assert tuple(out[0, 2]) == (255, 255, 255)


def test_tiny_negative_noise_keeps_sequential_colormap() -> None:
    r = np.array([[1.0, 0.5, -1e-5]], np.float32)
    assert not vis.is_signed(r) and vis.is_signed(np.array([1.0, -0.01]))
    np.testing.assert_array_equal(vis.heatmap(r), vis.heatmap(np.maximum(r, 0)))
    assert vis.normalize(r, percentile=None).min() == 0.0


def test_colormap_luts_and_unknown_names() -> None:
    assert vis.colormap_lut("inferno").shape == (256, 3)
    assert vis.colormap_lut("turbo", "opencv").dtype == np.uint8
    np.testing.assert_array_equal(
        vis.colormap_lut("coldnhot", "matplotlib"), vis.colormap_lut("coldnhot", "opencv")
    )
    with pytest.raises(ValueError, match="unknown colormap 'nope'"):
        vis.heatmap(np.ones((2, 2)), cmap="nope")
    with pytest.raises(ValueError, match="OpenCV backend"):
        vis.heatmap(np.ones((2, 2)), cmap="nope", backend="opencv")
    with pytest.raises(ValueError, match="unknown backend"):
        vis.colormap_lut("hot", "pil")


def test_heatmap_shape_errors_name_the_shape() -> None:
    with pytest.raises(ValueError, match=r"\(2, 4, 4, 3\).*heatmaps\(\)"):
        vis.heatmap(np.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"\(5,\)"):
        vis.heatmap(np.zeros(5))
    assert vis.heatmap(np.zeros((1, 4, 4, 3))).shape == (4, 4, 3)  # batch of one is fine
    with pytest.raises(ValueError, match="heatmaps\\(\\) takes a batch"):
        vis.heatmaps(np.zeros((4, 4)))


def test_heatmaps_batch_and_resize(signed_map: np.ndarray) -> None:
    out = vis.heatmaps(np.stack([signed_map, signed_map * 0]))
    assert out.shape == (2, 12, 10, 3)
    assert vis.heatmap(signed_map, size=(24, 20)).shape == (24, 20, 3)
    assert vis.heatmaps(np.zeros((3, 5, 6))).shape == (3, 5, 6, 3)


# ----------------------------------------------------------------------------- overlay
def test_overlay_blends_and_resizes(signed_map: np.ndarray) -> None:
    image = np.full((24, 20, 3), 100, np.uint8)
    out = vis.overlay(image, signed_map, alpha=0.0)
    np.testing.assert_array_equal(out, image)
    full = vis.overlay(image, signed_map, alpha=1.0)
    np.testing.assert_array_equal(full, vis.heatmap(signed_map, size=(24, 20)))
    assert vis.overlay(np.random.rand(24, 20), signed_map, grayscale=True).shape == (24, 20, 3)
    with pytest.raises(ValueError, match="alpha"):
        vis.overlay(image, signed_map, alpha=1.5)


def test_to_rgb_uint8_ranges() -> None:
    assert vis.to_rgb_uint8(np.ones((2, 2), np.float32)).max() == 255  # [0, 1] floats
    centred = vis.to_rgb_uint8(np.array([[-1.0, 1.0]]))  # min-max scaled
    assert centred[0, 0, 0] == 0 and centred[0, 1, 0] == 255
    assert vis.to_rgb_uint8(np.full((2, 2, 1), 7.0))[0, 0, 0] == 7  # 0..255 kept
    with pytest.raises(ValueError, match=r"\(2, 2, 5\)"):
        vis.to_rgb_uint8(np.zeros((2, 2, 5)))


# ----------------------------------------------------------------------------- grid
def test_comparison_grid_layout() -> None:
    rng = np.random.default_rng(1)
    images = rng.random((3, 8, 8, 3))
    maps = {"gradient": rng.normal(size=(3, 8, 8, 3)), "clrp": np.abs(rng.normal(size=(3, 8, 8)))}
    fig = vis.comparison_grid(
        images,
        maps,
        titles=["a", "b", "c"],
        class_names=["cat", "dog", "cup"],
        show_sums=True,
        overlay_alpha=0.5,
        suptitle="t",
    )
    axes = [ax for ax in fig.get_axes() if ax.images]  # the cells, not the colour bars
    assert len(axes) == 3 * 3
    assert axes[1].get_title() == "gradient" and axes[2].get_title() == "clrp"
    assert axes[0].get_title() == "a\n→ cat"
    arr = vis.figure_to_array(fig)
    assert arr.ndim == 3 and arr.shape[2] == 3


def test_comparison_grid_errors() -> None:
    images = np.zeros((2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"maps of 'x' have shape \(3, 8, 8\); expected 2"):
        vis.comparison_grid(images, {"x": np.zeros((3, 8, 8))})
    with pytest.raises(ValueError, match="1 titles for 2"):
        vis.comparison_grid(images, {"x": np.zeros((2, 8, 8))}, titles=["a"])
    with pytest.raises(TypeError, match="mapping"):
        vis.comparison_grid(images, [np.zeros((2, 8, 8))])
    one = vis.comparison_grid(np.zeros((8, 8, 3)), {"x": np.zeros((1, 8, 8))})  # single image
    assert len([ax for ax in one.get_axes() if ax.images]) == 2


def test_grid_image_layout_and_content() -> None:
    images = np.zeros((2, 8, 8, 3), np.uint8)
    maps = {"pos": np.ones((2, 8, 8)), "neg": -np.ones((2, 8, 8, 3))}
    grid = vis.grid_image(images, maps, row_labels=["a", "b"], title="t", cell=32)
    assert grid.shape == (20 + 18 + 2 * (32 + 16 + 4) + 44, 3 * (32 + 4) + 4, 3)
    y = 20 + 18 + 16 + 16  # middle of the first row's cells
    assert tuple(grid[y, 4 + 16]) == (0, 0, 0)  # the black image
    assert tuple(grid[y, 4 + 36 + 16]) == (255, 255, 255)  # constant positive: 'hot' top
    assert tuple(grid[y, 4 + 72 + 16]) == (0, 0, 255)  # constant negative: bwr blue
    with pytest.raises(ValueError, match=r"maps of 'x' have shape \(1, 8, 8\); expected 2"):
        vis.grid_image(images, {"x": np.zeros((1, 8, 8))})
    with pytest.raises(ValueError, match="row_labels"):
        vis.grid_image(images, maps, row_labels=["a"])


def _colour_bars(fig) -> list:
    """The colour-bar axes of a figure (children of the bar-row holders)."""
    return [child for ax in fig.get_axes() for child in ax.child_axes]


def _tick_texts(cax) -> list[str]:
    return [t.get_text() for t in cax.get_xticklabels()]


def test_comparison_grid_colour_bars_show_the_drawn_colours() -> None:
    rng = np.random.default_rng(2)
    signed = rng.normal(size=(2, 8, 8))
    signed[:, 0, 0] = 0.0
    positive = np.abs(rng.normal(size=(2, 8, 8)))
    positive[:, 0, 0] = 0.0
    fig = vis.comparison_grid(
        np.zeros((2, 8, 8, 3)), {"grad": signed, "lrp": positive}, show_sums=True
    )
    bars = _colour_bars(fig)
    assert [_tick_texts(b) for b in bars] == [["−s", "0", "+s"], ["0", "s"]]
    assert all("99.5th percentile of |R|" in b.get_xlabel() for b in bars)
    cells = [ax for ax in fig.get_axes() if ax.images]
    for bar, cell, maps, centre in (
        (bars[0], cells[1], signed, 0.5),
        (bars[1], cells[2], positive, 0.0),
    ):
        cmap = next(c for c in bar.collections if type(c).__name__ == "QuadMesh").cmap
        drawn = cell.images[0].get_array()
        peak = np.unravel_index(np.argmax(np.abs(maps[0])), maps[0].shape)
        end = 1.0 if maps[0][peak] > 0 else 0.0  # the largest |R| saturates its end
        top = np.round(np.asarray(cmap(end)[:3]) * 255)
        zero = np.round(np.asarray(cmap(centre)[:3]) * 255)
        np.testing.assert_array_equal(drawn[peak], top)  # max |R| is at the ±s end
        np.testing.assert_array_equal(drawn[0, 0], zero)  # zero relevance is the 0 tick
    assert any("ΣR = sum of the map" in t.get_text() for t in fig.texts)


def test_wrap_text_breaks_lines_without_dropping_characters() -> None:
    text = "lrp.epsilon(epsilon=0.1, bias=True)"
    lines = vis.wrap_text(text, 64)
    assert len(lines) > 1
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    for line in lines:
        assert cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0] <= 64
    assert vis.wrap_text("short", 128) == ["short"]


def test_grid_image_wraps_titles_and_states_its_scale() -> None:
    images = np.zeros((1, 8, 8, 3), np.uint8)
    maps = {"lrp.epsilon(epsilon=0.1, bias=True)": np.ones((1, 8, 8)), "neg": -np.ones((1, 8, 8))}
    grid = vis.grid_image(images, maps, cell=64)
    lines = len(vis.wrap_text("lrp.epsilon(epsilon=0.1, bias=True)", 64))
    header = 4 + 14 * lines
    assert grid.shape == (header + (64 + 16 + 4) + 44, 3 * (64 + 4) + 4, 3)
    ramp_y = header + 64 + 16 + 4 + 6
    x_pos, x_neg = 4 + 68, 4 + 2 * 68
    import matplotlib

    hot_bottom = np.round(np.asarray(matplotlib.colormaps["hot"](0.0)[:3]) * 255)
    np.testing.assert_array_equal(grid[ramp_y, x_pos], hot_bottom)  # 'hot' 0 end
    assert tuple(grid[ramp_y, x_pos + 63]) == (255, 255, 255)  # 'hot' s end: white
    assert tuple(grid[ramp_y, x_neg]) == (0, 0, 255)  # bwr −s end: blue
    assert tuple(grid[ramp_y, x_neg + 63]) == (255, 0, 0)  # bwr +s end: red
    assert grid[ramp_y, x_neg + 32].min() >= 245  # the middle (≈ 0) is white


def test_class_contrast_figure_titles_boxes_and_family_bars() -> None:
    from matplotlib.patches import Rectangle

    from tf_clrp import figures

    rng = np.random.default_rng(3)
    image = rng.random((16, 16, 3))
    grad = rng.normal(size=(2, 16, 16))
    guided = np.abs(rng.normal(size=(2, 16, 16)))  # non-negative, but in the signed family
    guided[:, 0, 0] = 0.0
    clrp = np.abs(rng.normal(size=(2, 16, 16)))
    fig = figures.class_contrast_figure(
        image,
        {"gradient": grad, "guided_backprop": guided, "clrp": clrp},
        ["cat (1)", "cup (2)"],
        boxes=[(0, 0, 8, 8), (0, 8, 8, 16)],
        title="t",
        caption="c",
    )
    cells = [ax for ax in fig.get_axes() if ax.images]
    assert [ax.get_title() for ax in cells[:4]] == ["input", "Gradient", "Guided Backprop", "CLRP"]
    assert cells[0].get_ylabel() == "explains\ncat (1)"
    assert cells[4].get_ylabel() == "explains\ncup (2)"
    boxes = [p for p in cells[4].patches if isinstance(p, Rectangle)]
    assert len(boxes) == 1 and boxes[0].get_xy() == (7.5, -0.5)
    bars = _colour_bars(fig)
    assert [b.get_xlabel().split(";")[0] for b in bars] == [
        "gradient family",
        "LRP family (CLRP included)",
    ]
    assert _tick_texts(bars[0]) == ["−s", "0", "+s"] and _tick_texts(bars[1]) == ["0", "s"]
    # the family's bar is diverging, so the non-negative Guided Backprop map is drawn with
    # it: zero is white (bwr centre), not black ('hot' bottom)
    assert cells[2].images[0].get_array()[0, 0].min() >= 250
    clrp_zero = cells[3].images[0].get_array()[np.unravel_index(np.argmin(clrp[0]), (16, 16))]
    assert clrp_zero.max() <= 20  # CLRP alone in its family: 'hot', low end dark
    with pytest.raises(ValueError, match="expected 2 maps"):
        figures.class_contrast_figure(image, {"clrp": clrp[:1]}, ["a", "b"])


# ----------------------------------------------------------------------------- files
def test_save_png_array_round_trip(tmp_path) -> None:
    image = np.zeros((5, 7, 3), np.uint8)
    image[..., 0] = 255  # red
    path = vis.save_png(image, tmp_path / "sub" / "red.png")
    back = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert back.shape == (5, 7, 3) and tuple(back[0, 0]) == (0, 0, 255)  # BGR on disk
    gray = vis.save_png(np.ones((3, 3)) * 0.5, tmp_path / "gray.png")
    assert cv2.imread(gray, cv2.IMREAD_UNCHANGED).shape == (3, 3)


def test_save_png_never_overwrites_and_leaves_no_temp(tmp_path) -> None:
    path = tmp_path / "x.png"
    vis.save_png(np.zeros((2, 2, 3), np.uint8), path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        vis.save_png(np.full((2, 2, 3), 255, np.uint8), path)
    assert path.read_bytes() == before
    vis.save_png(np.full((2, 2, 3), 255, np.uint8), path, overwrite=True)
    assert path.read_bytes() != before
    assert sorted(os.listdir(tmp_path)) == ["x.png"]  # no temporary files left


def test_save_png_figure_and_errors(tmp_path) -> None:
    fig = vis.comparison_grid(np.zeros((1, 4, 4, 3)), {"m": np.ones((1, 4, 4))})
    path = vis.save_png(fig, tmp_path / "fig.png")
    assert cv2.imread(path) is not None
    with pytest.raises(ValueError, match="uint8 image or floats in"):
        vis.save_png(np.full((2, 2), 3.0), tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        vis.save_png(np.zeros((2, 2, 2), np.uint8), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_atomic_write_keeps_old_content_on_failure(tmp_path, monkeypatch) -> None:
    path = tmp_path / "r.txt"
    vis.atomic_write(path, b"old")

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        vis.atomic_write(path, b"new", overwrite=True)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["r.txt"]
