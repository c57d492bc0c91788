"""number_plates: Kaggle aslanahmedov/number-plate-detection (number plates in Pascal VOC)."""
