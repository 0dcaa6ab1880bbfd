"""Raw MIDI -> filtered, key-normalised, split, Parquet-sharded notes and rolls."""
