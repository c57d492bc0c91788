"""car_plates: Kaggle "Car License Plate Detection" (andrewmvd/car-plate-detection)."""
