"""synthetic_plates: rendered road scenes with licence plates and their text."""
