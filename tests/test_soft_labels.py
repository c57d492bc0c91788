"""Per-character soft labels (kdod.ocr.soft_labels): a teacher's frames projected onto A-Z0-9,
CTC's best alignment and the KL divergence on hand-worked cases, its gradient, the soft-label
file, training with it, and RapidOCR as the teacher."""

import importlib.util
import math

import numpy as np
import pytest
import tensorflow as tf
from test_plate_ctc import train, write_crop_csv

from kdod import config
from kdod.ocr import crop_sets, ctc, soft_labels

A, B = ctc.ALPHABET.index("A"), ctc.ALPHABET.index("B")  # classes of the soft labels
ZERO = ctc.ALPHABET.index("0")

# ---------------------------------------------------------------- the teacher's side


def test_teacher_frames_project_onto_the_labels_alphabet_by_hand():
    """Upper and lower case sum, O is 0, a dash is read but dropped, a character no label holds
    takes no share; each character's distribution is its peak frame's."""
    characters = ["blank", "a", "A", "O", "0", "-", "B", "中"]
    classes = soft_labels.alphabet_classes(characters)
    assert classes.tolist() == [-1, A, A, ZERO, ZERO, -1, B, -1]
    frames = np.array([
        [0.9, 0.05, 0.0, 0.0, 0.0, 0.0, 0.05, 0.0],   # blank
        [0.0, 0.5, 0.2, 0.0, 0.0, 0.0, 0.2, 0.1],     # 'a': A 0.7, B 0.2 of 0.9
        [0.0, 0.4, 0.1, 0.0, 0.0, 0.0, 0.4, 0.1],     # the same run, a lower peak: ignored
        [0.1, 0.0, 0.0, 0.0, 0.0, 0.8, 0.1, 0.0],     # '-': dropped
        [0.1, 0.0, 0.0, 0.6, 0.3, 0.0, 0.0, 0.0]])    # 'O': all of it on 0
    text, rows = soft_labels.project(frames, classes)
    assert text == "A0"
    expected = np.zeros((2, soft_labels.CLASSES))
    expected[0, A], expected[0, B] = 0.7 / 0.9, 0.2 / 0.9
    expected[1, ZERO] = 1.0
    np.testing.assert_allclose(rows, expected, rtol=1e-6)


def test_a_label_takes_the_distributions_of_the_first_reading_holding_it():
    rows = np.eye(soft_labels.CLASSES, dtype=np.float32)
    readings = [("UTAH", rows[:4]), ("XAB12", rows[4:9]), ("AB1", rows[9:12])]
    np.testing.assert_array_equal(soft_labels.label_distributions("AB1", readings), rows[5:8])
    assert soft_labels.label_distributions("ZZ9", readings) is None


# ---------------------------------------------------------------- alignment and loss by hand


def log_frames(sequence: str, peak: float = 0.9) -> np.ndarray:
    """log softmax frames [T, NUM_CLASSES] with `peak` on each frame's class ('-': blank)."""
    rest = (1 - peak) / (ctc.NUM_CLASSES - 1)
    frames = np.full((len(sequence), ctc.NUM_CLASSES), math.log(rest))
    for t, char in enumerate(sequence):
        frames[t, ctc.BLANK if char == "-" else ctc.ALPHABET.index(char) + 1] = math.log(peak)
    return frames


@pytest.mark.parametrize("sequence, text, expected", [
    ("-AA-B", "AB", [1, 4]),     # A's run holds frames 1 and 2: the likelier (equal: first)
    ("A-A-", "AA", [0, 2]),      # a repeat is aligned across the blank between
    ("--C-", "C", [2]),
    ("A", "AA", [-1, -1]),       # no alignment fits: two A's need three frames
])
def test_best_ctc_alignment_places_each_character_by_hand(sequence, text, expected):
    frames = log_frames(sequence)[None]
    labels = ctc.encode(text)[None]
    aligned = soft_labels.aligned_frames(frames, labels, np.array([True]))
    assert aligned[0, :len(text)].tolist() == expected
    assert (aligned[0, len(text):] == -1).all()
    assert (soft_labels.aligned_frames(frames, labels, np.array([False])) == -1).all()


def student_logits() -> np.ndarray:
    """Three frames, "A" read at frame 1 where the student says A or B half and half."""
    logits = np.full((1, 3, ctc.NUM_CLASSES), -30.0, np.float32)
    logits[0, [0, 2], ctc.BLANK] = 10.0
    logits[0, 1, [A + 1, B + 1]] = 10.0
    return logits


def teacher_a_or_b(share_a: float = 0.75) -> np.ndarray:
    soft = np.zeros((1, ctc.MAX_LABEL_LENGTH, soft_labels.CLASSES), np.float32)
    soft[0, 0, A], soft[0, 0, B] = share_a, 1 - share_a
    return soft


def test_soft_label_loss_is_the_kl_divergence_at_the_aligned_frame_by_hand():
    labels = ctc.encode("A")[None]
    loss = soft_labels.soft_label_loss(labels, teacher_a_or_b(), student_logits())
    # KL(0.75, 0.25 || 0.5, 0.5) = 0.75 ln 1.5 + 0.25 ln 0.5
    assert float(loss[0]) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-5)
    # At T = 2 the teacher is (0.75, 0.25)^(1/2) renormalized, the student still half and
    # half (logits 10 and 10, halved), and the KL is scaled by 4.
    soft_a = math.sqrt(0.75) / (math.sqrt(0.75) + math.sqrt(0.25))
    warm = soft_labels.soft_label_loss(labels, teacher_a_or_b(), student_logits(), 2.0)
    assert float(warm[0]) == pytest.approx(4 * (soft_a * math.log(2 * soft_a) + (1 - soft_a)
                                                * math.log(2 * (1 - soft_a))), abs=1e-5)
    without = soft_labels.soft_label_loss(labels, np.zeros_like(teacher_a_or_b()),
                                          student_logits())
    assert float(without[0]) == 0.0


def test_soft_label_gradient_moves_only_the_aligned_frame_toward_the_teacher():
    labels = ctc.encode("A")[None]
    logits = tf.Variable(student_logits())
    soft = teacher_a_or_b(0.9)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(soft_labels.soft_label_loss(labels, soft, logits))
    gradient = tape.gradient(loss, logits).numpy()
    assert np.abs(gradient[0, [0, 2]]).max() == 0.0  # only the frame A is aligned to
    assert gradient[0, 1, A + 1] < 0 < gradient[0, 1, B + 1]  # more A, less B
    losses = []
    for _ in range(50):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(soft_labels.soft_label_loss(labels, soft, logits))
        logits.assign_sub(0.5 * tape.gradient(loss, logits))
        losses.append(float(loss))
    assert losses[-1] < 0.01 * losses[0]


# ---------------------------------------------------------------- the file and training


def write_soft_file(folder, rows, texts, share: float = 0.8):
    """folder/soft_labels.npz: each text's characters at `share`, the rest on the next class."""
    tables = np.zeros((len(texts), ctc.MAX_LABEL_LENGTH, soft_labels.CLASSES), np.float32)
    for crop, text in enumerate(texts):
        for position, char in enumerate(text):
            index = ctc.ALPHABET.index(char)
            tables[crop, position, index] = share
            tables[crop, position, (index + 1) % soft_labels.CLASSES] = 1 - share
    names = [path.relative_to(folder).as_posix() for path, _ in rows]
    path = folder / soft_labels.SOFT_LABELS_FILE
    np.savez(path, files=np.array(names), probabilities=tables)
    return path


def test_soft_label_file_joins_the_csv_rows_and_refuses_what_does_not_fit(tmp_path, caplog):
    csv_path, texts = write_crop_csv(tmp_path / "mine", 3)
    rows = crop_sets.read_csv_rows(csv_path)
    folder = csv_path.parent
    path = write_soft_file(folder, rows[:2], ["ZZ1", texts[1]])  # the first was edited since
    soft = soft_labels.read_soft_labels(path, rows, folder)
    assert soft.shape == (3, ctc.MAX_LABEL_LENGTH, soft_labels.CLASSES)
    assert not soft[0].any() and not soft[2].any()  # left out, and none given
    assert "".join(ctc.ALPHABET[i] for i in soft[1, :len(texts[1])].argmax(1)) == texts[1]
    assert "1 soft labels left out" in caplog.text and "0.png" in caplog.text

    with pytest.raises(soft_labels.SoftLabelError, match="none of its 1 soft labels"):
        soft_labels.read_soft_labels(write_soft_file(folder, rows[:1], ["ZZ1"]), rows, folder)
    with pytest.raises(soft_labels.SoftLabelError, match="pseudo_label_ocr"):
        soft_labels.read_soft_labels(folder / "missing.npz", rows, folder)
    np.savez(folder / "other.npz", images=np.zeros(3))
    with pytest.raises(soft_labels.SoftLabelError, match="not a soft-label file"):
        soft_labels.read_soft_labels(folder / "other.npz", rows, folder)


def test_training_distils_soft_labels_of_a_crop_csv(tmp_path, clean_gin):
    csv_path, texts = write_crop_csv(tmp_path / "mine", 4)
    path = write_soft_file(csv_path.parent, crop_sets.read_csv_rows(csv_path), texts)
    run = tmp_path / "run"
    model = train(run, "train_ocr.steps = 3", "train_ocr.crops = 8",
                  f"train_ocr.text_csv = '{csv_path}'", "train_ocr.csv_holdout = 0.0",
                  f"train_ocr.soft_labels = '{path}'", "train_ocr.soft_label_weight = 2.0")
    assert int(model.optimizer.iterations.numpy()) == 3
    assert (run / "plate_ctc.tflite").is_file()

    with pytest.raises(config.ConfigError, match="train_ocr.text_csv"):
        train(tmp_path / "no_csv", "train_ocr.steps = 1", "train_ocr.crops = 8",
              f"train_ocr.soft_labels = '{path}'")


def test_soft_labels_weigh_in_the_training_loss(tmp_path):
    """The loss training minimises is CTC plus the weighted KL: the same crop, two weights."""
    from kdod.train_ocr_lib import SOFT_WIDTH, ctc_loss, with_soft_labels

    labels = ctc.encode("A")[None].astype(np.float32)
    targets = np.concatenate([labels, teacher_a_or_b().reshape(1, SOFT_WIDTH)], axis=1)
    logits = student_logits()
    plain = float(ctc_loss(labels, logits)[0])
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert float(with_soft_labels(ctc_loss, 3.0)(targets, logits)[0]) == pytest.approx(
        plain + 3.0 * kl, abs=1e-4)


# ---------------------------------------------------------------- RapidOCR as the teacher


def test_rapidocr_gives_soft_labels_of_the_plates_it_reads(tmp_path):
    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        pytest.skip("rapidocr is not installed (pip install 'kdod[rapidocr]' or make install)")
    from PIL import Image

    from kdod.ocr import anpr
    from tfds_builders.synthetic_plates.crops import CropConfig, render_crop

    (tmp_path / "crops").mkdir()
    texts = []
    for seed in (0, 4):  # clean scene and EU plates RapidOCR reads right
        image, text = render_crop(seed, CropConfig().clean())
        Image.fromarray(image).save(tmp_path / "crops" / f"{seed}.png")
        texts.append(text)
    (tmp_path / "labels.csv").write_text(
        "filename,plate_text\ncrops/0.png,{}\ncrops/4.png,{}\ncrops/0.png,ZZ9\n".format(*texts))
    summary = soft_labels.write_soft_labels(tmp_path, anpr.build_ocr("rapidocr"))
    assert summary == {"crops": 3, "soft_labelled": 2}  # ZZ9 is not what it reads there
    with np.load(tmp_path / soft_labels.SOFT_LABELS_FILE) as stored:
        assert stored["files"].tolist() == ["crops/0.png", "crops/4.png"]
        tables = stored["probabilities"]
    for table, text in zip(tables, texts):
        np.testing.assert_allclose(table[:len(text)].sum(axis=1), 1.0, rtol=1e-5)
        assert "".join(ctc.ALPHABET[i] for i in table[:len(text)].argmax(1)) == text
        assert not table[len(text):].any()
