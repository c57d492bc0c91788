"""ocr: exact match, CER and ms per plate of each OCR engine, on crops of known text.

    python -m kdod.benchmark ocr
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from kdod import registry
from kdod.benchmarks import targets
from kdod.benchmarks.common import BenchmarkOptions, prepared_synthetic
from kdod.errors import KdodError
from kdod.metrics.text import evaluate_reader
from kdod.ocr import cropping
from tfds_builders.synthetic_plates import synthetic_plates_dataset_builder as builder_lib
from tfds_builders.synthetic_plates.scene import render_scene

PlateSet = tuple[list, list[str]]  # (crops, texts)


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


def run(options: BenchmarkOptions, scenes: int = 100, legible_px: int = 24) -> dict:
    """OCR alone, per engine: exact match, CER and ms per plate of three read modes.

    Read modes: every line joined, the registration line selected, and selected +
    format-guided correction. Sets (see `plate_sets`): the first `scenes` test scenes as
    stored (lighting, blur, noise, JPEG, plates down to ~10 px high), and the same scenes
    rendered clean, where the best engine must read its target share of the legible plates.
    """
    sets = plate_sets(prepared_synthetic(options), scenes, legible_px)
    results: dict = {"plates": {name: len(texts) for name, (_, texts) in sets.items()},
                     "legible_px": legible_px, "formats": "synthetic", "engines": {}}
    for engine in registry.OCR_BACKENDS.list():
        try:
            reader = registry.OCR_BACKENDS.build(engine)
        except KdodError as error:
            results["engines"][engine] = {"unavailable": str(error)}
            continue
        results["engines"][engine] = {name: evaluate_reader(reader, crops, texts, "synthetic")
                                      for name, (crops, texts) in sets.items()}
    clean = {engine: r["clean"]["selected_formats"]["exact_match"]
             for engine, r in results["engines"].items() if "clean" in r}
    best = max(clean, key=clean.get) if clean else None
    measured = {"best_clean_exact_match": clean[best]} if best else {}
    return {**results, "best_engine_clean": best, **targets.check("ocr", measured)}
