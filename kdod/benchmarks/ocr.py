"""ocr: exact match, CER, ms per plate and model size of each OCR engine, on crops of known text.

    python -m kdod.benchmark ocr
    python -m kdod.benchmark ocr --ocr_model=runs/plate_ctc --text_csv=real_crops/labels.csv

Engines: every registered backend that can be built here (EasyOCR, RapidOCR, Tesseract, and
kdod's own plate_ctc when --ocr_model names its recognizer; python -m kdod.train_ocr trains it).
Sets: synthetic test scenes (`plate_sets`), kdod's rendered crops (`crop_sets`: clean and as a
camera sees them) and, with --text_csv, real crops of known text.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds
from tqdm import tqdm

from kdod import registry
from kdod.benchmarks import targets
from kdod.benchmarks.common import BenchmarkOptions, prepared_synthetic
from kdod.errors import KdodError
from kdod.metrics.text import evaluate_reader
from kdod.ocr import anpr, crop_sets, cropping
from tfds_builders.synthetic_plates import synthetic_plates_dataset_builder as builder_lib
from tfds_builders.synthetic_plates.crops import CropConfig
from tfds_builders.synthetic_plates.scene import render_scene

PlateSet = tuple[list, list[str]]  # (crops, texts)
CROP_SEED = 1  # rendered crops of the benchmark: not the seed 0 plate_ctc's recipe trains on


def plate_sets(builder: tfds.core.DatasetBuilder, scenes: int,
               legible_px: int) -> dict[str, PlateSet]:
    """Plate crops and their texts: "test" as stored, "clean" and "clean_small" re-rendered.

    The clean sets are the same scenes without effects, split into plates at least
    `legible_px` high and smaller ones.
    """
    margin = cropping.CropPreparation.margin
    sets: dict[str, PlateSet] = {"test": ([], []), "clean": ([], []), "clean_small": ([], [])}
    for example in tfds.as_numpy(builder.as_dataset(split=f"test[:{scenes}]")):
        for box, text in zip(example["objects"]["bbox"], example["objects"]["text"]):
            sets["test"][0].append(cropping.crop_box(example["image"], box, margin))
            sets["test"][1].append(text.decode())
    clean_config = builder.builder_config.scene_config().without_effects()
    for index in range(scenes):
        seed = builder_lib.scene_seed(builder.builder_config.seed, "test", index)
        scene = render_scene(seed, clean_config)
        for box, text in zip(scene.boxes, scene.texts):
            legible = (box[2] - box[0]) * clean_config.height >= legible_px
            crops, texts = sets["clean" if legible else "clean_small"]
            crops.append(cropping.crop_box(scene.image, box, margin))
            texts.append(text)
    return sets


def rendered_sets(count: int) -> dict[str, PlateSet]:
    """kdod's rendered crops (US/EU/two-line/vanity plates, frames): clean and with effects."""
    return {"crops_clean": crop_sets.rendered_crops(count, CROP_SEED, "test",
                                                    CropConfig().clean()),
            "crops": crop_sets.rendered_crops(count, CROP_SEED, "test", CropConfig())}


def build_engines(options: BenchmarkOptions) -> dict[str, object]:
    """Each registered engine, built, or the reason it is unavailable (a str)."""
    engines: dict[str, object] = {}
    for engine in registry.OCR_BACKENDS.list():
        model = options.ocr_model if engine in anpr.TRAINED_ENGINES else None
        try:
            engines[engine] = anpr.build_ocr(engine, model=model)
        except KdodError as error:
            engines[engine] = str(error)
    return engines


def model_bytes(engine: str, reader) -> int | None:
    """Bytes of the model files an engine reads plates with (None when not known)."""
    files: list[Path] = []
    if engine == "plate_ctc":
        files = [reader.path]
    elif engine == "rapidocr":
        import rapidocr_onnxruntime

        folder = Path(rapidocr_onnxruntime.__file__).parent / "models"
        files = [*folder.glob("*det*.onnx"), *folder.glob("*rec*.onnx")]  # no angle classifier
    elif engine == "easyocr":
        from kdod.ocr.easyocr_backend import default_model_dir

        folder = default_model_dir()
        files = [*Path(folder).glob("*.pth")] if folder else []
    elif engine == "tesseract":
        files = [*Path("/usr/share").glob(f"tesseract-ocr/*/tessdata/{reader.language}"
                                          ".traineddata")][:1]
    return sum(path.stat().st_size for path in files) if files else None


def run(options: BenchmarkOptions, scenes: int = 500, legible_px: int = 24,
        rendered: int = 300) -> dict:
    """OCR alone, per engine and set: exact match, CER and ms per plate of three read modes
    (every line joined, the registration line selected, selected + format-guided correction
    with the synthetic formats), and the engine's model size.

    Sets: the first `scenes` synthetic test scenes (500: the whole split; 100 gave 62 legible
    plates, one plate 1.6 points of exact match) as stored (lighting, blur, noise, JPEG,
    plates down to ~10 px high) and rendered clean (plates at least `legible_px` high, and
    smaller ones), `rendered` of kdod's rendered crops clean and with effects, and the crops of
    options.text_csv. The best engine must read its target share of the clean plates; plate_ctc
    has its own targets (clean exact match, ms per plate on one core, size).
    """
    sets = plate_sets(prepared_synthetic(options), scenes, legible_px)
    sets.update(rendered_sets(rendered))
    if options.text_csv:
        sets["real_csv"] = crop_sets.read_crop_csv(options.text_csv)
    results: dict = {"plates": {name: len(texts) for name, (_, texts) in sets.items()},
                     "legible_px": legible_px, "formats": "synthetic",
                     "text_csv": options.text_csv, "engines": {}}
    for engine, reader in build_engines(options).items():
        if isinstance(reader, str):
            results["engines"][engine] = {"unavailable": reader}
            continue
        # Sets, not plates: the big engines take minutes per set and read a set as one batch.
        progress = tqdm(sets.items(), desc=f"ocr {engine}", unit="set")
        measured = {name: evaluate_reader(reader, crops, texts, "synthetic")
                    for name, (crops, texts) in progress}
        size = model_bytes(engine, reader)
        results["engines"][engine] = {**measured, "model_mb": size / 1e6 if size else None}
    return {**results, **_verdicts(results["engines"])}


def _verdicts(engines: dict) -> dict:
    """The best engine on the clean scenes and its target; plate_ctc's own targets."""
    clean = {engine: r["clean"]["selected_formats"]["exact_match"]
             for engine, r in engines.items() if "clean" in r}
    best = max(clean, key=clean.get) if clean else None
    measured = {"best_clean_exact_match": clean[best]} if best else {}
    ours = engines.get("plate_ctc", {})
    own = ({"clean_exact_match": ours["clean"]["selected"]["exact_match"],
            "ms_per_plate": ours["clean"]["ms_per_plate"], "model_mb": ours["model_mb"]}
           if "clean" in ours else {})
    return {"best_engine_clean": best, **targets.check("ocr", measured),
            "plate_ctc": {**own, **targets.check("ocr_plate_ctc", own)}}
