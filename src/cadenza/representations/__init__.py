"""Music representations: notes, piano rolls and token schemes. Each encode has a decode."""
