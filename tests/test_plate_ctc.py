"""kdod's plate recognizer: CTC labels and decoding (hand-made frames), the network, its
training (checkpoints, resume, fine-tuning on a CSV of crops), the TFLite backend, and the
rendered training crops."""

import json
import math

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kdod import checkpoints, config, registry
from kdod.errors import KdodError
from kdod.files import files_digest
from kdod.metrics.text import edit_distance
from kdod.ocr import anpr, crop_sets, ctc, plate_ctc
from kdod.ocr.base import OcrSetupError
from kdod.ocr.recognizer import RecognizerConfig, build_recognizer
from tfds_builders.synthetic_plates.crops import LAYOUTS, CropConfig, render_crop

# ---------------------------------------------------------------- CTC by hand


def frames(sequence: str, peak: float = 0.9) -> np.ndarray:
    """Logits [T, classes] whose softmax puts `peak` on each frame's class ('-' is the blank)."""
    logits = np.zeros((len(sequence), ctc.NUM_CLASSES))
    rest = (1 - peak) / (ctc.NUM_CLASSES - 1)
    for t, char in enumerate(sequence):
        logits[t, :] = math.log(rest)
        logits[t, ctc.BLANK if char == "-" else ctc.ALPHABET.index(char) + 1] = math.log(peak)
    return logits


@pytest.mark.parametrize("sequence, text", [
    ("A-A-AC", "AAAC"),  # repeats kept: a blank between their runs
    ("10-0A-A-A", "100AAA"),
    ("AA-AAC", "AAC"),  # no blank: one run, one character
    ("--7--BB-C--", "7BC"),
])
def test_greedy_decoding_merges_runs_and_keeps_repeats_split_by_blanks(sequence, text):
    assert ctc.greedy_decode(frames(sequence))[0] == text


def test_score_is_the_least_sure_character():
    logits = frames("A-B")
    logits[2] = frames("B", 0.6)[0]
    text, score = ctc.greedy_decode(logits)
    assert text == "AB" and score == pytest.approx(0.6)
    assert ctc.greedy_decode(frames("----")) == ("", 0.0)


def test_labels_round_trip_and_refuse_other_characters():
    label = ctc.encode("AB12")
    assert label.tolist() == [1, 2, 28, 29, 0, 0, 0, 0, 0, 0]  # A=1, B=2, 1=28, 2=29, blanks
    assert ctc.decode(label) == "AB12"
    with pytest.raises(ctc.LabelError, match="'-ab'"):
        ctc.encode("Ab-1a")
    with pytest.raises(ctc.LabelError, match="longer than 10"):
        ctc.encode("A" * 11)


def test_keras_ctc_loss_matches_the_hand_computed_path_sum():
    """Two frames, uniform over 37 classes, label "A": paths AA, A-, -A each have probability
    1/37^2, so the loss is -log(3 / 37^2)."""
    logits = np.zeros((1, 2, ctc.NUM_CLASSES), np.float32)
    loss = keras.losses.ctc(ctc.encode("A")[None], logits)
    assert float(loss[0]) == pytest.approx(-math.log(3 / 37**2), rel=1e-5)


# ---------------------------------------------------------------- the network

TINY = RecognizerConfig(height=16, width=64, filters=(8, 8, 8), sequence_filters=8,
                        sequence_layers=1)


@pytest.mark.parametrize("two_lines, frames_", [(True, 48), (False, 16)])
def test_network_reads_width_over_4_frames_per_run(two_lines, frames_):
    spec = RecognizerConfig(height=16, width=64, filters=(8, 8, 8), sequence_filters=8,
                            two_lines=two_lines)
    model = build_recognizer(spec)
    assert spec.frames == frames_
    assert model(np.zeros((2, 16, 64, 3), np.float32)).shape == (2, frames_, ctc.NUM_CLASSES)


@pytest.mark.parametrize("bias, read", [(30.0, "halves"), (-30.0, "whole")])
def test_the_layout_gate_reads_a_plate_either_as_two_halves_or_as_one_line(bias, read):
    model = build_recognizer(RecognizerConfig(height=16, width=64, filters=(8, 8, 8),
                                              sequence_filters=8))
    gate = model.get_layer("two_line")
    kernel, _ = gate.get_weights()
    gate.set_weights([np.zeros_like(kernel), np.array([bias], np.float32)])  # Sure of a layout.
    runs = keras.Model(model.input, {name: (model.get_layer(name).output,
                                            model.get_layer(f"{name}_gated").output)
                                     for name in ("whole", "halves")})
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 64, 3)).astype(np.float32)
    for name, (frames, gated) in runs(images).items():
        frames = np.asarray(frames).reshape(np.shape(gated))
        assert np.abs(frames).sum() > 0
        np.testing.assert_allclose(gated, frames if name == read else 0 * frames, atol=1e-6)


def test_a_two_line_plate_is_read_as_its_top_half_then_its_bottom_half_in_one_line():
    model = build_recognizer(RecognizerConfig(height=16, width=64, filters=(8, 8, 8),
                                              sequence_filters=8))
    halves = keras.Model(model.input, model.get_layer("halves_image").output)
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 64, 3)).astype(np.float32)
    scaled = images / 127.5 - 1
    np.testing.assert_allclose(halves(images), np.concatenate([scaled[:, :8], scaled[:, 8:]], 2),
                               atol=1e-6)


def test_layout_loss_is_the_cross_entropy_of_known_layouts_and_nothing_for_unknown():
    from kdod.train_ocr_lib import layout_loss

    two_line = np.array([1.0, 0.0, crop_sets.UNKNOWN_LAYOUT], np.float32)
    gate = np.array([[0.8], [0.25], [0.5]], np.float32)
    np.testing.assert_allclose(layout_loss(two_line, gate), [-math.log(0.8), -math.log(0.75), 0],
                               rtol=1e-5)


def test_layout_ctc_holds_each_run_to_the_crops_layout_on_a_hand_counted_case():
    """Three frames (the whole run's one, the halves' two), uniform logits over C classes and the
    label "A": aligned freely, 6 of the C^3 paths read "A" (A--, -A-, --A, AA-, -AA, AAA); held
    to one line, only A in frame 0 (then p(blank) is taught in frames 1 and 2); held to two
    lines, 3 paths in frames 1-2 (A-, -A, AA) and frame 0 taught blank."""
    from kdod.train_ocr_lib import layout_ctc_loss

    classes = ctc.NUM_CLASSES
    label = ctc.encode("A")
    targets = np.stack([np.append(label, layout).astype(np.float32)
                        for layout in (crop_sets.UNKNOWN_LAYOUT, 0, 1)])
    loss = layout_ctc_loss(targets, np.zeros((3, 3, classes), np.float32))
    log_c = math.log(classes)
    np.testing.assert_allclose(loss, [3 * log_c - math.log(6), 3 * log_c, 3 * log_c - math.log(3)],
                               rtol=1e-5)


def test_layout_ctc_teaches_the_ruled_out_run_blank():
    from kdod.train_ocr_lib import layout_ctc_loss

    logits = tf.Variable(np.random.default_rng(0).normal(size=(1, 6, ctc.NUM_CLASSES)),
                         dtype=tf.float32)
    targets = np.append(ctc.encode("AB"), 0).astype(np.float32)[None]
    for _ in range(200):
        with tf.GradientTape() as tape:
            loss = layout_ctc_loss(targets, logits)
        logits.assign_sub(0.5 * tape.gradient(loss, logits))
    assert ctc.greedy_decode(logits.numpy()[0, :2])[0] == "AB"
    assert ctc.greedy_decode(logits.numpy()[0, 2:])[0] == ""


def test_the_layout_gate_is_taught_which_plates_are_two_line():
    """Gradient steps on the layout loss alone: the gate tells rendered two-line plates from
    one-line ones (it had settled on one-line for all, taught by CTC alone)."""
    from kdod.train_ocr_lib import layout_loss, training_model

    model = training_model(build_recognizer(RecognizerConfig(
        height=16, width=64, filters=(8, 8, 8), sequence_filters=8)))
    layouts = CropConfig(layouts=("us", "two_line")).clean()
    crops = crop_sets.synthetic_crops(32, 0, "train", 16, 64, layouts, workers=1)
    assert 0 < crops.two_line.mean() < 1
    images = crops.images.astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss={"logits": None, "two_line": layout_loss})
    model.fit(images, {"two_line": crops.two_line}, epochs=30, batch_size=32, verbose=0)
    gate = np.asarray(model(images, training=True)["two_line"])[:, 0]  # Batch statistics.
    assert np.mean((gate > 0.5) == (crops.two_line == 1)) >= 0.9


def test_crop_layout_is_the_layout_render_crop_draws(monkeypatch):
    from tfds_builders.synthetic_plates import crops

    drawn, draw_plate = [], crops._draw_plate
    monkeypatch.setattr(crops, "_draw_plate", lambda rng, layout, config: (
        drawn.append(layout), draw_plate(rng, layout, config))[1])
    seeds = [crop_sets.crop_seed(0, "train", index) for index in range(12)]
    for seed in seeds:
        crops.render_crop(seed, CropConfig().clean())
    assert drawn == [crops.crop_layout(seed, CropConfig()) for seed in seeds]
    assert len(set(drawn)) > 1
    np.testing.assert_array_equal(crop_sets.synthetic_two_line(12, 0, "train"),
                                  [layout == "two_line" for layout in drawn])


@pytest.mark.parametrize("settings, message", [
    ({"height": 20, "two_lines": False}, "multiple of 8"),
    ({"height": 40}, "multiple of 16"),  # Each half of a two-line plate is pooled by 8.
    ({"filters": (8, 8)}, "at least 3"),
    ({"dropout": 1.0}, "RecognizerConfig.dropout")])
def test_bad_network_settings_name_the_binding(settings, message):
    with pytest.raises(config.ConfigError, match=message):
        RecognizerConfig(**settings)


# ---------------------------------------------------------------- training and the backend

TRAIN = ["train_ocr.batch_size = 8", "train_ocr.eval_crops = 4", "train_ocr.log_every = 1",
         "make_optimizer.name = 'adam'", "make_optimizer.learning_rate = 0.003",
         "make_optimizer.warmup_steps = 10", "RecognizerConfig.height = 16",
         "RecognizerConfig.width = 64", "RecognizerConfig.filters = (16, 16, 32)",
         "RecognizerConfig.sequence_filters = 32", "RecognizerConfig.sequence_layers = 1",
         "RecognizerConfig.dropout = 0.0"]


def train(model_dir, *bindings):
    from kdod.train_ocr_lib import train_ocr

    gin.clear_config()
    config.parse_gin([], [*TRAIN, *bindings])
    return train_ocr(str(model_dir))


def write_crop_csv(folder, count, texts=None, extra_rows=()):
    """`count` rendered US plates saved as PNGs in folder/crops and a CSV naming them relative
    to its folder, with their registrations (or `texts`)."""
    (folder / "crops").mkdir(parents=True)
    rows, registrations = ["filename,plate_text"], []
    for index in range(count):
        image, text = render_crop(index, CropConfig(layouts=("us",)).clean())
        Image.fromarray(image).save(folder / "crops" / f"{index}.png")
        rows.append(f"crops/{index}.png,{texts[index] if texts else text}")
        registrations.append(text)
    path = folder / "labels.csv"
    path.write_text("\n".join([*rows, *extra_rows]) + "\n")
    return path, registrations


def test_train_resume_export_and_read(tmp_path, clean_gin):
    run = tmp_path / "run"
    train(run, "train_ocr.steps = 3", "train_ocr.checkpoint_every = 3", "train_ocr.crops = 16")
    assert [p.name for p in checkpoints.checkpoint_paths(run)] == ["ckpt-3.weights.h5"]
    model = train(run, "train_ocr.steps = 5", "train_ocr.checkpoint_every = 3",
                  "train_ocr.crops = 16")
    assert int(model.optimizer.iterations.numpy()) == 5  # resumed at 3, stopped at 5 exactly
    assert [p.name for p in checkpoints.checkpoint_paths(run)] == ["ckpt-3.weights.h5",
                                                                  "ckpt-5.weights.h5"]
    for name in ("plate_ctc.tflite", "recognizer.weights.h5", "metrics.json",
                 config.OPERATIVE_CONFIG):
        assert (run / name).is_file(), name
    assert list((run / "logs").rglob("events.out.tfevents*"))
    by_layout = json.loads((run / "metrics.json").read_text())["synthetic_clean_by_layout"]
    assert sorted(by_layout) == sorted(set(CropConfig().layouts))
    assert all(0 <= metrics["exact_match"] <= 1 for metrics in by_layout.values())
    reader = anpr.build_ocr("plate_ctc", model=str(run))
    reads = reader.read([np.zeros((20, 70, 3), np.uint8), np.full((9, 30, 3), 200, np.uint8)])
    assert len(reads) == 2 and all(set(r.text) <= set(ctc.ALPHABET) for r in reads)
    # The export computes what the Keras network does: the same frames, decoded.
    crop = render_crop(0, CropConfig().clean())[0]
    fitted = plate_ctc.fit_crop(crop, 16, 64)[None].astype(np.float32)
    expected = ctc.greedy_decode(np.asarray(model(fitted, training=False)["logits"])[0])
    assert reader.read_crop(crop)[0] == expected[0]


def test_fine_tuning_on_a_crop_csv_learns_its_plates(tmp_path, clean_gin):
    """Started from a run that reads none of them, on a user's CSV alone: after training it
    reads the four plates nearly right (character error rate) and most of them exactly.

    Not all four exactly: from a barely trained base the recognizer still drops a repeated
    character now and then (issue 12, open), and the test must not depend on that luck."""
    csv_path, texts = write_crop_csv(tmp_path / "mine", 4)
    bigger = ["RecognizerConfig.height = 32", "RecognizerConfig.width = 96",
              "train_ocr.deterministic = True"]
    base = tmp_path / "base"
    train(base, *bigger, "train_ocr.steps = 2", "train_ocr.crops = 16", "train_ocr.eval_crops = 0")
    crops, _ = crop_sets.read_crop_csv(csv_path)
    untrained = plate_ctc.PlateCtcBackend(str(base / "plate_ctc.tflite"))
    assert _character_error_rate(untrained.read(crops), texts) > 0.5
    run = tmp_path / "mine_run"
    train(run, *bigger, "train_ocr.steps = 600", "train_ocr.checkpoint_every = 600",
          "train_ocr.crops = 0", f"train_ocr.text_csv = '{csv_path}'", "train_ocr.csv_share = 1.0",
          "train_ocr.csv_holdout = 0.0", f"train_ocr.init_from = '{base}'",
          "make_optimizer.learning_rate = 0.01")
    reads = plate_ctc.PlateCtcBackend(str(run / "plate_ctc.tflite")).read(crops)
    assert _character_error_rate(reads, texts) < 0.15, [read.text for read in reads]
    assert sum(read.text == text for read, text in zip(reads, texts)) >= 2


def test_fine_tuning_a_longer_run_trains_its_own_steps_from_that_run_s_weights(tmp_path,
                                                                               clean_gin):
    """The base ran 4 steps, the fine-tuning 2: it must train 2 steps of its own, not inherit
    the base's optimizer (then at step 4, a fine-tuning of fewer steps stopped after one)."""
    import h5py

    base = tmp_path / "base"
    shape = ["train_ocr.crops = 16", "train_ocr.eval_crops = 0"]
    train(base, *shape, "train_ocr.steps = 4", "train_ocr.checkpoint_every = 4")
    with h5py.File(base / checkpoints.RECOGNIZER_WEIGHTS) as weights:
        assert "optimizer" not in weights  # The network alone, as detector.weights.h5.
    model = train(tmp_path / "tuned", *shape, "train_ocr.steps = 2",
                  "train_ocr.checkpoint_every = 2", f"train_ocr.init_from = '{base}'")
    assert int(model.optimizer.iterations.numpy()) == 2
    assert [p.name for p in checkpoints.checkpoint_paths(tmp_path / "tuned")] == [
        "ckpt-2.weights.h5"]

    from kdod.train_ocr_lib import initialize_from

    trained = train(base, *shape, "train_ocr.steps = 4")  # Already trained: loads, trains 0.
    fresh = build_recognizer(RecognizerConfig())  # As gin configures it, as in training.
    fresh.compile(optimizer="adam")
    initialize_from(fresh, str(base))
    for ours, theirs in zip(fresh.weights, trained.weights, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_fine_tuning_run_reads_the_rendered_crops_of_the_run_it_starts_from(tmp_path,
                                                                            clean_gin):
    from kdod.train_ocr_lib import cached_synthetic

    shape = RecognizerConfig(height=16, width=64)
    (tmp_path / "base").mkdir()
    first = cached_synthetic(tmp_path / "base", 4, 0, "train", shape, CropConfig())
    (stored,) = (tmp_path / "base").glob("crops-train-*.npz")
    with np.load(stored) as arrays:  # Marked, to see that the stored file is what comes back.
        np.savez(stored, images=arrays["images"] * 0, labels=arrays["labels"],
                 texts=arrays["texts"])
    reused = cached_synthetic(tmp_path / "tuned", 4, 0, "train", shape, CropConfig(),
                              init_from=tmp_path / "base")
    assert reused.texts == first.texts and not reused.images.any()
    assert not (tmp_path / "tuned").exists()  # Nothing rendered nor written again.


def test_crops_cached_by_other_renderer_code_are_rendered_again(tmp_path, monkeypatch):
    from kdod.train_ocr_lib import cached_synthetic

    shape = RecognizerConfig(height=16, width=64)
    cached_synthetic(tmp_path, 2, 0, "train", shape, CropConfig())
    monkeypatch.setattr(crop_sets, "renderer_fingerprint", lambda: "changed-code")
    cached_synthetic(tmp_path, 2, 0, "train", shape, CropConfig())
    assert len(list(tmp_path.glob("crops-train-*.npz"))) == 2


def test_the_renderer_fingerprint_covers_the_rendering_code_and_changes_with_it(tmp_path):
    names = {path.name for path in crop_sets.renderer_sources()}
    assert {"crops.py", "lettering.py", "plates.py", "crop_sets.py", "plate_ctc.py"} <= names
    assert "synthetic_plates_dataset_builder_test.py" not in names
    files = [tmp_path / "a.py", tmp_path / "b.py"]
    for path in files:
        path.write_text("x = 1\n")
    before = files_digest(files, tmp_path)
    files[1].write_text("x = 2\n")
    assert files_digest(files, tmp_path) != before


def test_crops_rendered_by_several_processes_are_those_of_one(monkeypatch):
    monkeypatch.setattr(crop_sets, "RENDER_CHUNK", 3)  # 7 crops: chunks of 3, 3 and 1.
    alone = crop_sets.synthetic_crops(7, 5, "train", 16, 64, workers=1)
    shared = crop_sets.synthetic_crops(7, 5, "train", 16, 64, workers=2)
    assert shared.texts == alone.texts and len(alone) == 7
    np.testing.assert_array_equal(shared.images, alone.images)
    np.testing.assert_array_equal(shared.labels, alone.labels)


def _character_error_rate(reads, texts: list[str]) -> float:
    errors = sum(edit_distance(read.text, text) for read, text in zip(reads, texts))
    return errors / sum(len(text) for text in texts)


def test_backend_says_how_to_train_when_the_model_is_missing(tmp_path):
    with pytest.raises(OcrSetupError, match="python -m kdod.train_ocr"):
        registry.OCR_BACKENDS.build("plate_ctc")
    with pytest.raises(OcrSetupError, match="No plate recognizer at .*plate_ctc.tflite"):
        anpr.build_ocr("plate_ctc", model=str(tmp_path))
    with pytest.raises(KdodError, match="--ocr_model applies to the trained OCR engines"):
        anpr.build_ocr("rapidocr", model=str(tmp_path))


# ---------------------------------------------------------------- crop CSVs


def test_csv_rows_are_cleaned_and_bad_text_skipped_or_refused(tmp_path, caplog):
    path, _ = write_crop_csv(tmp_path, 2, texts=["ab-123", "7 XYZ"],
                             extra_rows=["crops/0.png,ÄB1", "crops/1.png,", "crops/0.png,A*B"])
    crops, texts = crop_sets.read_crop_csv(path)
    assert texts == ["AB123", "7XYZ"] and len(crops) == 2 and crops[0].ndim == 3
    assert "3 of 5 rows left out" in caplog.text and "line 4" in caplog.text
    with pytest.raises(crop_sets.CropSetError, match=r"labels.csv:4: 'ÄB1': characters outside"):
        crop_sets.read_crop_csv(path, bad_text="refuse")


def test_csv_errors_name_the_file(tmp_path):
    with pytest.raises(crop_sets.CropSetError, match="No crop CSV at .*none.csv"):
        crop_sets.read_crop_csv(tmp_path / "none.csv")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "a.csv").write_text("missing.png,AB12\n")
    (tmp_path / "b.csv").write_text("broken.png,AB12\n")
    with pytest.raises(crop_sets.CropSetError, match="missing.png .*does not exist"):
        crop_sets.read_crop_csv(tmp_path / "a.csv")
    with pytest.raises(crop_sets.CropSetError, match="broken.png .*cannot be read as an image"):
        crop_sets.read_crop_csv(tmp_path / "b.csv")


# ---------------------------------------------------------------- rendered crops


@pytest.mark.parametrize("layout", LAYOUTS)
def test_crops_are_reproducible_and_labelled_in_the_alphabet(layout):
    config_ = CropConfig(layouts=(layout,))
    for seed in range(4):
        image, text = render_crop(seed, config_)
        again, same = render_crop(seed, config_)
        assert np.array_equal(image, again) and text == same
        assert image.dtype == np.uint8 and image.shape[2] == 3 and image.shape[0] >= 8
        assert 2 <= len(text) <= ctc.MAX_LABEL_LENGTH and set(text) <= set(ctc.ALPHABET)
    assert render_crop(0, config_)[0].tobytes() != render_crop(1, config_)[0].tobytes()


def test_clean_crops_keep_the_plate_and_drop_the_camera():
    _, text = render_crop(3, CropConfig())
    clean, same = render_crop(3, CropConfig().clean())
    assert text == same
    assert clean.shape[0] >= 100  # drawn 100 px high, no resolution change
    with pytest.raises(KdodError, match="unknown \\['three_line'\\]"):
        CropConfig(layouts=("three_line",))


def test_crops_beyond_the_scenes_draw_every_letter_and_store_the_letter_o_as_zero():
    texts = [render_crop(seed, CropConfig(layouts=("us", "eu", "two_line")).clean())[1]
             for seed in range(150)]
    assert "O" not in "".join(texts)  # Stored as the digit, as plate readers' truth writes it.
    assert {"I", "Q"} <= set("".join(texts))
    scene_texts = "".join(render_crop(seed, CropConfig(layouts=("scene",)))[1]
                          for seed in range(40))
    assert not set("IOQ") & set(scene_texts)  # The scenes' own registrations, unchanged.


def test_stroke_weight_makes_the_registration_bolder_or_thinner_in_its_ink():
    from tfds_builders.synthetic_plates.crops import _stroke_weight

    layer = Image.new("RGBA", (40, 20), (255, 255, 255, 0))
    layer.paste((10, 20, 30, 255), (15, 2, 20, 18))  # A 5-pixel-wide stroke.
    bolder = np.asarray(_stroke_weight(layer.copy(), (10, 20, 30), bolder=True))
    thinner = np.asarray(_stroke_weight(layer.copy(), (10, 20, 30), bolder=False))
    assert (bolder[..., 3] > 0).sum(axis=1)[10] == 7 and (thinner[..., 3] > 0).sum(axis=1)[10] == 3
    assert (bolder[bolder[..., 3] > 0][:, :3] == (10, 20, 30)).all()  # Drawn in the ink.
