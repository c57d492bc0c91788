"""number_plates: Kaggle "Automatic Number Plate Recognition" (aslanahmedov/number-plate-detection)."""
