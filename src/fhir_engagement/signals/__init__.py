"""Event -> signals, driven by the data in mappings/: ``mappings`` loads it, ``extract`` applies it."""
